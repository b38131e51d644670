/**
 * `@weft/cli`: the `weft` command. Run it as `npx weft --help`; `main(argv)`
 * runs it in-process and resolves to the exit code (0 ok, 1 failure, 2 usage).
 *
 * @packageDocumentation
 */

export { type DemoOptions, runDemo } from './demo.js';
export { main } from './main.js';
