// A Node `ws` client for tests/tls_node.rs: wss://localhost:PORT/echo/, certificate
// verification on. MODE "ca" trusts the CA file through the `ca` option, "env" through
// NODE_EXTRA_CA_CERTS (set by the test), "none" trusts nothing and must be refused.
// Sends binary messages of several sizes and checks each comes back byte for byte.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');

const [port, mode, caFile] = process.argv.slice(2);
const opts = { maxPayload: 0 };
if (mode === 'ca') opts.ca = fs.readFileSync(caFile);
const ws = new WebSocket(`wss://localhost:${port}/echo/`, opts);
const sizes = [1, 1000, 70000, 3000000];
let want = null;
let got = [];
let gotLen = 0;

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + n) % 256;
  return b;
}

function next() {
  const n = sizes.shift();
  if (n === undefined) {
    ws.close(1000);
    return;
  }
  want = pattern(n);
  got = [];
  gotLen = 0;
  ws.send(want);
}

ws.on('open', () => {
  if (mode === 'none') {
    console.log('CONNECTED without trusting the CA');
    process.exit(3);
  }
  next();
});
ws.on('message', (data) => {
  got.push(Buffer.from(data));
  gotLen += data.length;
  if (gotLen < want.length) return;
  if (!Buffer.concat(got).equals(want)) {
    console.log(`MISMATCH ${want.length}`);
    process.exit(4);
  }
  console.log(`PASS ${want.length}`);
  next();
});
ws.on('close', (code) => {
  console.log(`CLOSED ${code}`);
  process.exit(sizes.length === 0 && code === 1000 ? 0 : 5);
});
ws.on('error', (e) => {
  console.log(`ERROR ${e.code || ''} ${e.message}`);
  process.exit(mode === 'none' ? 0 : 2);
});
