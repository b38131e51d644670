// hypercore 11 ships no type declarations; this is the part the benchmark uses.
declare module 'hypercore' {
  export default class Hypercore {
    constructor(storage: string);
    ready(): Promise<void>;
    append(block: Uint8Array | Uint8Array[]): Promise<{ length: number }>;
    get(index: number): Promise<Uint8Array | null>;
    createReadStream(options?: { start?: number; end?: number }): AsyncIterable<Uint8Array>;
    readonly length: number;
    close(): Promise<void>;
  }
}
