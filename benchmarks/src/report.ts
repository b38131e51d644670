/** REPORT.md and one SVG chart per suite (and per scaling curve) from the suites' JSON results. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explanations } from './explanations.js';
import type { Curve, Figure, SuiteResult, Target } from './harness.js';

const number = (value: number): string => {
  if (!Number.isFinite(value)) return '–';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toPrecision(3);
};

function targetText(target: Target | undefined, unit: string): string {
  if (target === undefined) return '';
  switch (target.kind) {
    case 'ratio-at-least':
      return `≥ ${target.value}x`;
    case 'ratio-at-most':
      return `≤ ${target.value}x`;
    case 'value-at-least':
      return `≥ ${number(target.value)} ${unit}`;
    case 'value-at-most':
      return `≤ ${number(target.value)} ${unit}`;
  }
}

function verdict(figure: Figure): string {
  if (figure.met === undefined) return '';
  return figure.met ? 'met' : '**missed**';
}

function figureRow(figure: Figure): string {
  const weft = `${number(figure.weft.median)} ${figure.unit}`;
  const baseline = figure.baseline === undefined ? '' : `${number(figure.baseline.stat.median)} (${figure.baseline.name})`;
  const ratio = figure.ratio === undefined ? '' : `${figure.ratio.median.toFixed(2)}x`;
  const spread =
    figure.ratio !== undefined && figure.ratio.samples > 1
      ? `${figure.ratio.p25.toFixed(2)}–${figure.ratio.p75.toFixed(2)}x`
      : figure.weft.samples > 1
        ? `${number(figure.weft.min)}–${number(figure.weft.max)}`
        : '';
  const extra =
    figure.extra?.weftP99 === undefined
      ? ''
      : ` (p99 ${number(figure.extra.weftP99)} ms; raw p50 ${number(figure.extra.baselineP50 ?? Number.NaN)}, p99 ${number(figure.extra.baselineP99 ?? Number.NaN)} ms)`;
  return `| ${figure.label}${extra} | ${weft} | ${baseline} | ${ratio} | ${spread} | ${targetText(figure.target, figure.unit)} | ${verdict(figure)} |`;
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars: ratios against the baseline when the suite has them, otherwise the values. */
function barChart(result: SuiteResult): string | undefined {
  const withRatio = result.figures.filter((figure) => figure.ratio !== undefined);
  const figures = withRatio.length > 0 ? withRatio : result.figures;
  if (figures.length === 0) return undefined;
  const ratios = withRatio.length > 0;
  const value = (figure: Figure) => (ratios ? (figure.ratio?.median ?? 0) : figure.weft.median);
  const labelWidth = 430;
  const barWidth = 330;
  const row = 22;
  const height = 40 + figures.length * row + 20;
  const max = Math.max(ratios ? 2 : 0, ...figures.map(value)) * 1.05;
  const x = (v: number) => labelWidth + (v / max) * barWidth;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + barWidth + 80}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="8" y="18" font-size="13" font-weight="bold">${escapeXml(result.suite)}: ${ratios ? 'weft / baseline (higher is better for throughput, lower for latency)' : 'weft'}</text>`,
  ];
  figures.forEach((figure, index) => {
    const y = 32 + index * row;
    const v = value(figure);
    const colour = figure.met === false ? '#d9534f' : figure.met === true ? '#5cb85c' : '#5b8bd9';
    parts.push(`<text x="8" y="${y + 14}">${escapeXml(figure.label.slice(0, 68))}</text>`);
    parts.push(`<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(v) - labelWidth)}" height="${row - 8}" fill="${colour}"/>`);
    parts.push(`<text x="${x(v) + 4}" y="${y + 14}">${ratios ? `${v.toFixed(2)}x` : `${number(v)} ${escapeXml(figure.unit)}`}</text>`);
  });
  if (ratios) {
    const one = x(1);
    parts.push(`<line x1="${one}" y1="28" x2="${one}" y2="${height - 14}" stroke="#333" stroke-dasharray="3,3"/>`);
    parts.push(`<text x="${one - 8}" y="${height - 4}">1.0</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** A log-log line chart of one scaling curve. */
function curveChart(curve: Curve): string {
  const width = 640;
  const height = 360;
  const left = 70;
  const right = 130;
  const top = 30;
  const bottom = 40;
  const points = curve.series.flatMap((series) => series.points).filter((point) => point.y > 0);
  const xs = points.map((point) => point.x);
  const ys = points.map((point) => point.y);
  const [x0, x1] = [Math.log10(Math.min(...xs)), Math.log10(Math.max(...xs)) || 1];
  const [y0, y1] = [Math.floor(Math.log10(Math.min(...ys))), Math.ceil(Math.log10(Math.max(...ys)))];
  const px = (x: number) => left + ((Math.log10(x) - x0) / Math.max(1e-9, x1 - x0)) * (width - left - right);
  const py = (y: number) => height - bottom - ((Math.log10(y) - y0) / Math.max(1e-9, y1 - y0)) * (height - top - bottom);
  const colours = ['#5b8bd9', '#d9534f', '#5cb85c', '#f0ad4e'];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="8" y="18" font-size="13" font-weight="bold">${escapeXml(curve.label)} (${escapeXml(curve.unit)}, log-log)</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#333"/>`,
    `<text x="${(width - right) / 2}" y="${height - 8}">${escapeXml(curve.x)}</text>`,
  ];
  for (let decade = y0; decade <= y1; decade++) {
    parts.push(`<text x="${left - 6}" y="${py(10 ** decade) + 4}" text-anchor="end">${number(10 ** decade)}</text>`);
    parts.push(`<line x1="${left}" y1="${py(10 ** decade)}" x2="${width - right}" y2="${py(10 ** decade)}" stroke="#ddd"/>`);
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(`<text x="${px(x)}" y="${height - bottom + 14}" text-anchor="middle">${number(x)}</text>`);
  }
  curve.series.forEach((series, index) => {
    const colour = colours[index % colours.length];
    const valid = series.points.filter((point) => point.y > 0);
    if (valid.length === 0) return;
    parts.push(
      `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${valid.map((point) => `${px(point.x).toFixed(1)},${py(point.y).toFixed(1)}`).join(' ')}"/>`,
    );
    for (const point of valid) parts.push(`<circle cx="${px(point.x)}" cy="${py(point.y)}" r="3" fill="${colour}"/>`);
    parts.push(`<text x="${width - right + 10}" y="${top + 14 + index * 16}" fill="${colour}">${escapeXml(series.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function curveTable(curve: Curve): string {
  const xs = [...new Set(curve.series.flatMap((series) => series.points.map((point) => point.x)))].sort((a, b) => a - b);
  const header = `| ${curve.x} | ${curve.series.map((series) => `${series.name} (${curve.unit})`).join(' | ')} |`;
  const rule = `| --- | ${curve.series.map(() => '---').join(' | ')} |`;
  const rows = xs.map(
    (x) =>
      `| ${number(x)} | ${curve.series.map((series) => number(series.points.find((point) => point.x === x)?.y ?? Number.NaN)).join(' | ')} |`,
  );
  return [header, rule, ...rows].join('\n');
}

export function writeReport(dir: string, results: readonly SuiteResult[], titles: Readonly<Record<string, string>>, command: string): void {
  const lines: string[] = [];
  const first = results[0];
  lines.push('# weft benchmark report', '');
  lines.push(
    `Generated by \`${command}\`${results.some((result) => result.quick) ? ' (quick smoke run: sizes are tiny, figures are not meaningful)' : ''}.`,
    '',
  );
  if (first !== undefined) {
    lines.push(`Machine: ${first.environment.cpu}, ${first.environment.platform}, Node ${first.environment.node}.`, '');
  }
  lines.push(
    'Every figure with a baseline was measured in the same process against it, interleaved round by round; the ratio is weft / baseline, the median of the per-round ratios, with the interquartile range of those ratios as its spread. For throughput, higher is better; for latency, lower.',
    '',
  );
  const all = results.flatMap((result) => result.figures);
  const targeted = all.filter((figure) => figure.met !== undefined);
  lines.push('## Targets', '');
  lines.push(`${targeted.filter((figure) => figure.met).length} of ${targeted.length} targets met.`, '');
  lines.push('| figure | weft | baseline | ratio | spread | target | |', '| --- | --- | --- | --- | --- | --- | --- |');
  for (const figure of targeted) lines.push(figureRow(figure));
  lines.push('');
  const missed = targeted.filter((figure) => figure.met === false);
  if (missed.length > 0) {
    lines.push('### Missed targets', '');
    for (const figure of missed) {
      const explanation =
        explanations[figure.id] ?? explanations[figure.id.replace(/\.\d+$/, '')] ?? explanations[figure.id.replace(/\.\d+\./, '.')];
      lines.push(
        `- **${figure.label}** (${figure.ratio === undefined || figure.target?.kind.startsWith('value') ? `${number(figure.weft.median)} ${figure.unit}` : `${figure.ratio.median.toFixed(2)}x`}, target ${targetText(figure.target, figure.unit)}): ${explanation ?? 'not yet explained.'}`,
      );
    }
    lines.push('');
  }
  for (const result of results) {
    lines.push(`## ${titles[result.suite] ?? result.suite}`, '');
    if (result.skipped !== undefined) {
      lines.push(`Skipped: ${result.skipped}`, '');
      continue;
    }
    lines.push(`Suite \`${result.suite}\`: ${(result.durationMs / 1000).toFixed(0)} s, peak RSS ${result.peakRssMb} MB.`, '');
    for (const note of result.notes) lines.push(`- ${note}`);
    if (result.notes.length > 0) lines.push('');
    if (result.figures.length > 0) {
      lines.push('| figure | weft | baseline | ratio | spread | target | |', '| --- | --- | --- | --- | --- | --- | --- |');
      for (const figure of result.figures) lines.push(figureRow(figure));
      lines.push('');
    }
    const chart = barChart(result);
    if (chart !== undefined && result.figures.length > 1) {
      writeFileSync(join(dir, `${result.suite}.svg`), chart);
      lines.push(`![${result.suite}](${result.suite}.svg)`, '');
    }
    for (const curve of result.curves) {
      writeFileSync(join(dir, `${curve.id}.svg`), curveChart(curve));
      lines.push(`### ${curve.label}`, '', curveTable(curve), '', `![${curve.label}](${curve.id}.svg)`, '');
    }
  }
  writeFileSync(join(dir, 'REPORT.md'), `${lines.join('\n')}\n`);
}
