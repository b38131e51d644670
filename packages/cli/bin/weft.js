#!/usr/bin/env node
// The `weft` command. The implementation is compiled to dist/ by `npm run build`.
import { main } from '../dist/main.js';

process.exitCode = await main(process.argv.slice(2));
