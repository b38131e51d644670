#!/usr/bin/env node
// The `weft` command. The implementation is compiled to dist/ by `npm run build`.
import { main } from '../dist/main.js';

// A reader that stops early (`weft kv watch ... | head`) closes the pipe: that ends the command quietly.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const code = await main(process.argv.slice(2));
// Exit once what was written is flushed, even if a client left a handle open (a connection attempt to a server
// that never answered): the command is done.
process.stdout.write('', () => process.exit(code));
