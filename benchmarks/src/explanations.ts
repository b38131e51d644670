/**
 * Why a target was missed, keyed by figure id (or the id without its
 * trailing concurrency). Each entry is backed by a profile or a measurement
 * named in it; REPORT.md quotes it next to the miss.
 */
export const explanations: Readonly<Record<string, string>> = {};
