/**
 * Measurement primitives. Every figure with a natural baseline is measured
 * against it in the same process, interleaved round by round (A B, then B A,
 * ...), and its ratio is the median of the per-round ratios, so drift of the
 * machine during a run affects both sides alike.
 */

export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly p25: number;
  readonly p75: number;
  readonly samples: number;
}

export type Target =
  /** weft / baseline must be at least `value` (throughput) */
  | { readonly kind: 'ratio-at-least'; readonly value: number }
  /** weft / baseline must be at most `value` (latency) */
  | { readonly kind: 'ratio-at-most'; readonly value: number }
  /** weft's median must be at least `value`, in the figure's unit */
  | { readonly kind: 'value-at-least'; readonly value: number }
  /** weft's median must be at most `value`, in the figure's unit */
  | { readonly kind: 'value-at-most'; readonly value: number };

export interface Figure {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly higherIsBetter: boolean;
  readonly weft: Stat;
  readonly baseline?: { readonly name: string; readonly stat: Stat };
  /** weft / baseline, median of paired per-round ratios */
  readonly ratio?: Stat;
  readonly target?: Target;
  readonly met?: boolean | undefined;
  /** extra figures of the same measurement, e.g. p99 latencies */
  readonly extra?: Readonly<Record<string, number>>;
}

export interface Curve {
  readonly id: string;
  readonly label: string;
  readonly x: string;
  readonly unit: string;
  readonly series: readonly { readonly name: string; readonly points: readonly { readonly x: number; readonly y: number }[] }[];
}

export interface SuiteResult {
  readonly suite: string;
  readonly quick: boolean;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly peakRssMb: number;
  readonly figures: readonly Figure[];
  readonly curves: readonly Curve[];
  readonly notes: readonly string[];
  readonly skipped?: string;
  readonly environment: Readonly<Record<string, string>>;
}

export function stat(values: readonly number[]): Stat {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    if (sorted.length === 0) return Number.NaN;
    const index = (sorted.length - 1) * q;
    const low = Math.floor(index);
    const high = Math.ceil(index);
    return (sorted[low] as number) + ((sorted[high] as number) - (sorted[low] as number)) * (index - low);
  };
  return {
    median: at(0.5),
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
    p25: at(0.25),
    p75: at(0.75),
    samples: sorted.length,
  };
}

export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function judge(target: Target | undefined, weft: Stat, ratio: Stat | undefined): boolean | undefined {
  if (target === undefined) return undefined;
  switch (target.kind) {
    case 'ratio-at-least':
      return ratio !== undefined && ratio.median >= target.value;
    case 'ratio-at-most':
      return ratio !== undefined && ratio.median <= target.value;
    case 'value-at-least':
      return weft.median >= target.value;
    case 'value-at-most':
      return weft.median <= target.value;
  }
}

export type Operation = (index: number) => Promise<unknown>;

/** A system weft is measured against: a raw client of the server, or a peer library doing the same job. */
export interface Contender {
  readonly name: string;
  readonly op: Operation;
  readonly kind: 'raw' | 'peer' | 'weft';
}

/** A figure id segment from a contender's name. */
export function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** Runs `ops` operations with `concurrency` in flight; returns operations per second. */
export async function timeOps(op: Operation, ops: number, concurrency: number, offset = 0): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, ops) }, async () => {
      while (next < ops) {
        const index = next++;
        await op(offset + index);
      }
    }),
  );
  return ops / ((performance.now() - started) / 1000);
}

export interface Progress {
  update(text: string): void;
  done(text: string): void;
}

export function progress(suite: string): Progress {
  const tty = process.stderr.isTTY === true;
  return {
    update(text) {
      if (tty) process.stderr.write(`\r\u001b[K[${suite}] ${text}`);
    },
    done(text) {
      process.stderr.write(`${tty ? '\r\u001b[K' : ''}[${suite}] ${text}\n`);
    },
  };
}

function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  return value.toPrecision(3);
}

/** Collects a suite's figures and curves; sizes shrink in quick mode. */
export class Bench {
  readonly figures: Figure[] = [];
  readonly curves: Curve[] = [];
  readonly notes: string[] = [];
  readonly progress: Progress;

  constructor(
    readonly suite: string,
    readonly quick: boolean,
  ) {
    this.progress = progress(suite);
  }

  /** `full` in a full run, `quick` in a smoke run. */
  size(full: number, quick: number): number {
    return this.quick ? quick : full;
  }

  get rounds(): number {
    return this.quick ? 2 : 7;
  }

  record(figure: Omit<Figure, 'met'>): Figure {
    const complete: Figure = { ...figure, met: judge(figure.target, figure.weft, figure.ratio) };
    this.figures.push(complete);
    const ratio = complete.ratio === undefined ? '' : `  ${complete.ratio.median.toFixed(2)}x ${complete.baseline?.name}`;
    const verdict = complete.met === undefined ? '' : complete.met ? '  (target met)' : '  (target missed)';
    this.progress.done(`${complete.label}: ${format(complete.weft.median)} ${complete.unit}${ratio}${verdict}`);
    return complete;
  }

  /** Throughput of weft against a baseline, interleaved per round. */
  async compare(options: {
    id: string;
    label: string;
    weft: Operation;
    baseline: { name: string; op: Operation };
    ops: number;
    concurrency: number;
    target?: Target;
    unit?: string;
  }): Promise<Figure> {
    const weft: number[] = [];
    const base: number[] = [];
    const ratios: number[] = [];
    let offset = 0;
    const nextOffset = () => {
      offset += options.ops;
      return offset;
    };
    // One untimed warm-up of each.
    await timeOps(options.weft, Math.min(options.ops, 200), options.concurrency, nextOffset());
    await timeOps(options.baseline.op, Math.min(options.ops, 200), options.concurrency, nextOffset());
    for (let round = 0; round < this.rounds; round++) {
      this.progress.update(`${options.label}: round ${round + 1}/${this.rounds}`);
      let a: number;
      let b: number;
      if (round % 2 === 0) {
        a = await timeOps(options.weft, options.ops, options.concurrency, nextOffset());
        b = await timeOps(options.baseline.op, options.ops, options.concurrency, nextOffset());
      } else {
        b = await timeOps(options.baseline.op, options.ops, options.concurrency, nextOffset());
        a = await timeOps(options.weft, options.ops, options.concurrency, nextOffset());
      }
      weft.push(a);
      base.push(b);
      ratios.push(a / b);
    }
    return this.record({
      id: options.id,
      label: options.label,
      unit: options.unit ?? 'ops/s',
      higherIsBetter: true,
      weft: stat(weft),
      baseline: { name: options.baseline.name, stat: stat(base) },
      ratio: stat(ratios),
      ...(options.target === undefined ? {} : { target: options.target }),
    });
  }

  /**
   * Throughput of weft against several other systems at once, interleaved:
   * each round runs weft and every contender, in an order that rotates from
   * round to round. Raw clients set the bar: the main figure compares weft
   * with the fastest of them in this run (by median) and says which it was;
   * every other contender gets a figure of its own (peers with `peerTarget`).
   */
  async contest(options: {
    id: string;
    label: string;
    weft: Operation;
    contenders: readonly Contender[];
    ops: number;
    concurrency: number;
    target?: Target;
    peerTarget?: Target;
  }): Promise<Figure[]> {
    const runners = [{ name: 'weft', op: options.weft }, ...options.contenders];
    const rates = runners.map(() => [] as number[]);
    let offset = 0;
    const nextOffset = () => {
      offset += options.ops;
      return offset;
    };
    for (const runner of runners) await timeOps(runner.op, Math.min(options.ops, 200), options.concurrency, nextOffset());
    for (let round = 0; round < this.rounds; round++) {
      this.progress.update(`${options.label}: round ${round + 1}/${this.rounds}`);
      for (let step = 0; step < runners.length; step++) {
        const index = (round + step) % runners.length;
        (rates[index] as number[]).push(await timeOps((runners[index] as Contender).op, options.ops, options.concurrency, nextOffset()));
      }
    }
    const [weft, ...others] = rates as [number[], ...number[][]];
    const against = (index: number, id: string, label: string, name: string, target: Target | undefined): Figure => {
      const base = others[index] as number[];
      return this.record({
        id,
        label,
        unit: 'ops/s',
        higherIsBetter: true,
        weft: stat(weft),
        baseline: { name, stat: stat(base) },
        ratio: stat(weft.map((rate, round) => rate / (base[round] as number))),
        ...(target === undefined ? {} : { target }),
      });
    };
    const raw = options.contenders.flatMap((contender, index) => (contender.kind === 'raw' ? [index] : []));
    const fastest = raw.reduce<number | undefined>(
      (best, index) =>
        best === undefined || stat(others[index] as number[]).median > stat(others[best] as number[]).median ? index : best,
      undefined,
    );
    const figures: Figure[] = [];
    if (fastest !== undefined) {
      const name = (options.contenders[fastest] as Contender).name;
      figures.push(against(fastest, options.id, `${options.label} vs the fastest raw client`, `fastest raw: ${name}`, options.target));
    }
    for (const [index, contender] of options.contenders.entries()) {
      if (index === fastest) continue;
      figures.push(
        against(
          index,
          `${options.id}.${slug(contender.name)}`,
          `${options.label} vs ${contender.name}`,
          contender.name,
          contender.kind === 'peer' ? options.peerTarget : undefined,
        ),
      );
    }
    return figures;
  }

  /** Throughput without a baseline. */
  async throughput(options: {
    id: string;
    label: string;
    op: Operation;
    ops: number;
    concurrency: number;
    target?: Target;
    unit?: string;
    /** operations per timed op, e.g. events per batch */
    scale?: number;
  }): Promise<Figure> {
    const values: number[] = [];
    let offset = 0;
    const nextOffset = () => {
      offset += options.ops;
      return offset;
    };
    await timeOps(options.op, Math.min(options.ops, 200), options.concurrency, nextOffset());
    for (let round = 0; round < this.rounds; round++) {
      this.progress.update(`${options.label}: round ${round + 1}/${this.rounds}`);
      values.push((await timeOps(options.op, options.ops, options.concurrency, nextOffset())) * (options.scale ?? 1));
    }
    return this.record({
      id: options.id,
      label: options.label,
      unit: options.unit ?? 'ops/s',
      higherIsBetter: true,
      weft: stat(values),
      ...(options.target === undefined ? {} : { target: options.target }),
    });
  }

  /**
   * Latency samples of weft and a baseline, alternating sample by sample.
   * Each sample function returns one latency in milliseconds. The ratio is
   * computed per round of samples, on the p50.
   */
  async compareLatency(options: {
    id: string;
    label: string;
    weft: () => Promise<number>;
    baseline: { name: string; sample: () => Promise<number> };
    samples: number;
    target?: Target;
  }): Promise<Figure> {
    const weft: number[] = [];
    const base: number[] = [];
    const ratios: number[] = [];
    for (let warm = 0; warm < 20; warm++) {
      await options.weft();
      await options.baseline.sample();
    }
    const perRound = Math.max(1, Math.floor(options.samples / this.rounds));
    for (let round = 0; round < this.rounds; round++) {
      this.progress.update(`${options.label}: round ${round + 1}/${this.rounds}`);
      const a: number[] = [];
      const b: number[] = [];
      for (let index = 0; index < perRound; index++) {
        if ((round + index) % 2 === 0) {
          a.push(await options.weft());
          b.push(await options.baseline.sample());
        } else {
          b.push(await options.baseline.sample());
          a.push(await options.weft());
        }
      }
      weft.push(...a);
      base.push(...b);
      ratios.push(percentile(a, 0.5) / percentile(b, 0.5));
    }
    return this.record({
      id: options.id,
      label: options.label,
      unit: 'ms (p50)',
      higherIsBetter: false,
      weft: stat(weft),
      baseline: { name: options.baseline.name, stat: stat(base) },
      ratio: stat(ratios),
      extra: {
        weftP50: percentile(weft, 0.5),
        weftP99: percentile(weft, 0.99),
        baselineP50: percentile(base, 0.5),
        baselineP99: percentile(base, 0.99),
      },
      ...(options.target === undefined ? {} : { target: options.target }),
    });
  }

  curve(curve: Curve): void {
    this.curves.push(curve);
    this.progress.done(`${curve.label}: ${curve.series.map((series) => `${series.name} ${series.points.length} points`).join(', ')}`);
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `predicate` holds, checking every `everyMs`. */
export async function until(predicate: () => boolean, everyMs = 1): Promise<void> {
  while (!predicate()) await sleep(everyMs);
}
