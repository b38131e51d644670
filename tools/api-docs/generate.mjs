// Generates the API reference of every public weft package into docs/api/
// (ignored by git). Run with `npm run docs:api` after `npm run build`.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Application } from 'typedoc';

const root = fileURLToPath(new URL('../../', import.meta.url));
const packages = readdirSync(`${root}packages`)
  .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(`${root}packages/${dir}/package.json`, 'utf8')) }))
  .filter(({ manifest, dir }) => !manifest.private && !manifest.bin && existsSync(`${root}packages/${dir}/src/index.ts`));

for (const { dir } of packages) {
  if (!existsSync(`${root}packages/${dir}/dist/index.d.ts`)) {
    console.error(`packages/${dir} is not built: run \`npm run build\` first`);
    process.exit(1);
  }
}

// typedoc needs the TypeScript compiler API, which the repository's native
// TypeScript does not have: it runs on its own TypeScript over a tsconfig
// naming every package's sources.
const tsconfig = `${root}tools/api-docs/tsconfig.generated.json`;
writeFileSync(
  tsconfig,
  `${JSON.stringify(
    {
      extends: '../../tsconfig.base.json',
      compilerOptions: { composite: false, noEmit: true, declaration: false, declarationMap: false },
      include: packages.map(({ dir }) => `../../packages/${dir}/src`),
    },
    null,
    2,
  )}\n`,
);

const app = await Application.bootstrapWithPlugins({
  name: 'weft',
  entryPoints: packages.map(({ dir }) => `${root}packages/${dir}/src/index.ts`),
  tsconfig,
  out: `${root}docs/api`,
  readme: `${root}README.md`,
  disableSources: true,
  excludePrivate: true,
  excludeInternal: true,
  skipErrorChecking: true,
  logLevel: 'Warn',
});
const project = await app.convert();
if (project === undefined) {
  console.error('typedoc could not convert the packages');
  process.exit(1);
}
await app.generateDocs(project, app.options.getValue('out'));
console.log(`API reference for ${packages.map(({ manifest }) => manifest.name).join(', ')} written to docs/api/index.html`);
