// Prints the functions with the most self and inclusive time in a V8 CPU profile directory.
import { readdirSync, readFileSync } from 'node:fs';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: node summarize.mjs <cpu-prof directory>');
const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
if (file === undefined) throw new Error(`no .cpuprofile in ${dir}`);
const profile = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8'));
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parents = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
const sampled = new Map();
for (const [index, id] of profile.samples.entries()) sampled.set(id, (sampled.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
const name = (node) => {
  const frame = node.callFrame;
  return `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber}`;
};
const self = new Map();
const inclusive = new Map();
let total = 0;
for (const [id, time] of sampled) {
  total += time;
  const node = nodes.get(id);
  self.set(name(node), (self.get(name(node)) ?? 0) + time);
  const seen = new Set();
  for (let at = id; at !== undefined; at = parents.get(at)) {
    const label = name(nodes.get(at));
    if (seen.has(label)) continue;
    seen.add(label);
    inclusive.set(label, (inclusive.get(label) ?? 0) + time);
  }
}
const print = (title, map) => {
  console.log(title);
  for (const [label, time] of [...map].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    console.log(`${((time / total) * 100).toFixed(1).padStart(6)}%  ${label}`);
  }
};
console.log(`sampled ${Math.round(total / 1000)} ms`);
print('self time', self);
print('inclusive time', inclusive);
