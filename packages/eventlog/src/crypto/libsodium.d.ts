// The `libsodium` package ships no types; sodium.ts declares the part of its WebAssembly module it uses.
declare module 'libsodium' {
  const factory: unknown;
  export default factory;
}
