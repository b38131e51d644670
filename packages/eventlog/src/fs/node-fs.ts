import { constants, promises as fs } from 'node:fs';
import { FileSystemError, type LogFile, type LogFileSystem, type OpenOptions } from './types.js';

function wrap(error: unknown): never {
  const code = (error as { code?: string } | undefined)?.code;
  if (code !== undefined) throw new FileSystemError(code, error instanceof Error ? error.message : String(error));
  throw error;
}

class NodeLogFile implements LogFile {
  constructor(private readonly handle: fs.FileHandle) {}

  async size(): Promise<number> {
    return (await this.handle.stat().catch(wrap)).size;
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, position + filled).catch(wrap);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === length ? buffer : buffer.subarray(0, filled);
  }

  async write(data: Uint8Array, position: number): Promise<number> {
    const { bytesWritten } = await this.handle.write(data, 0, data.length, position).catch(wrap);
    return bytesWritten;
  }

  async sync(): Promise<void> {
    await this.handle.sync().catch(wrap);
  }

  async truncate(size: number): Promise<void> {
    await this.handle.truncate(size).catch(wrap);
  }

  async close(): Promise<void> {
    await this.handle.close().catch(wrap);
  }
}

/** The real filesystem, through `node:fs/promises`. */
export const nodeFileSystem: LogFileSystem = {
  async mkdir(path) {
    await fs.mkdir(path, { recursive: true }).catch(wrap);
  },
  async readdir(path) {
    return fs.readdir(path).catch(wrap);
  },
  async exists(path) {
    return fs.access(path).then(
      () => true,
      () => false,
    );
  },
  async open(path, options: OpenOptions = {}) {
    let flags = options.readOnly ? constants.O_RDONLY : constants.O_RDWR;
    if (options.create) flags |= constants.O_CREAT;
    if (options.exclusive) flags |= constants.O_EXCL;
    return new NodeLogFile(await fs.open(path, flags, 0o644).catch(wrap));
  },
  async rename(from, to) {
    await fs.rename(from, to).catch(wrap);
  },
  async unlink(path) {
    await fs.unlink(path).catch(wrap);
  },
  async syncDir(path) {
    const handle = await fs.open(path, constants.O_RDONLY).catch(wrap);
    try {
      await handle.sync().catch(wrap);
    } finally {
      await handle.close();
    }
  },
};
