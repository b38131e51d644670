/**
 * Blobs kept on the device: one file per blob under `<stateDir>/blobs/`,
 * written atomically through the filesystem seam.
 */
import type { LogFileSystem } from '@weft/eventlog';

export class LocalBlobStore {
  readonly #dir: string;

  constructor(
    private readonly fs: LogFileSystem,
    stateDir: string,
  ) {
    this.#dir = `${stateDir}/blobs`;
  }

  /** Ids of every blob stored here. */
  async list(): Promise<string[]> {
    if (!(await this.fs.exists(this.#dir))) return [];
    return (await this.fs.readdir(this.#dir)).filter((name) => /^[0-9a-f]{64}$/.test(name)).sort();
  }

  async has(id: string): Promise<boolean> {
    return this.fs.exists(`${this.#dir}/${id}`);
  }

  async read(id: string): Promise<Uint8Array | undefined> {
    const path = `${this.#dir}/${id}`;
    if (!(await this.fs.exists(path))) return undefined;
    const file = await this.fs.open(path);
    try {
      return await file.read(0, await file.size());
    } finally {
      await file.close();
    }
  }

  async write(id: string, bytes: Uint8Array): Promise<void> {
    await this.fs.mkdir(this.#dir);
    const path = `${this.#dir}/${id}`;
    if (await this.fs.exists(path)) return;
    const temporary = `${path}.tmp`;
    if (await this.fs.exists(temporary)) await this.fs.unlink(temporary);
    const file = await this.fs.open(temporary, { create: true, exclusive: true });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written), written);
      await file.sync();
    } finally {
      await file.close();
    }
    await this.fs.rename(temporary, path);
    await this.fs.syncDir(this.#dir);
  }
}
