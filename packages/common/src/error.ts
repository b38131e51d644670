/** Options every {@link WeftError} accepts. */
export interface WeftErrorOptions {
  /** The native error, kept for diagnosis. */
  readonly cause?: unknown;
  /** Whether the same call may succeed if simply repeated. @default false */
  readonly retryable?: boolean | undefined;
}

type ErrorClass<T> = abstract new (...args: never[]) => T;

/**
 * The base of every error a weft package throws: a `code` from the
 * package's const object of codes, `retryable`, and the native error as
 * `cause`. Callers branch on `code`, never on message text.
 *
 * A subclass declares `static readonly brand = Symbol.for('<package>/<Class>')`;
 * instances carry the brand of their class and of every weft class above it,
 * and `instanceof` checks the brand, so it holds across two installed copies
 * of a package in one process.
 */
export class WeftError<Code extends string = string> extends Error {
  static readonly brand: symbol = Symbol.for('@weft/common/WeftError');
  readonly code: Code;
  readonly retryable: boolean;

  constructor(code: Code, message: string, options: WeftErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    for (let type: unknown = new.target; typeof type === 'function' && type !== Error; type = Object.getPrototypeOf(type)) {
      if (Object.hasOwn(type, 'brand')) Object.defineProperty(this, (type as unknown as { brand: symbol }).brand, { value: true });
    }
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass asked about, whose brand decides
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[this.brand] === true;
  }

  /** True when `error` is an instance of this class, optionally with the given code. */
  static is<T extends WeftError>(this: ErrorClass<T>, error: unknown, code?: T['code']): error is T {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass `is` was called on
    return error instanceof this && (code === undefined || (error as T).code === code);
  }
}
