// Opens a page in headless Chromium over the DevTools protocol and reports what it requested and
// what it rendered, as JSON on stdout. Run with node --experimental-websocket (Node 20).
//   node --experimental-websocket test/helpers/page-check.mjs <chromium> <file.html>
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [chromium, file] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'pma-chromium-'));
const browser = spawn(
  chromium,
  [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--remote-debugging-port=0',
    `--user-data-dir=${profile}`,
    'about:blank',
  ],
  // Its own process group: the helpers it starts (zygote, crashpad) go with it at the end.
  { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
);
const endpoint = await new Promise((resolve, reject) => {
  let err = '';
  browser.stderr.on('data', (d) => {
    err += d.toString();
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
    if (m) resolve(m[1]);
  });
  browser.on('exit', () => reject(new Error(`chromium exited: ${err}`)));
  setTimeout(() => reject(new Error(`chromium did not start: ${err}`)), 30_000);
});
const targets = await (
  await fetch(endpoint.replace('ws://', 'http://').replace(/\/devtools\/browser\/.*/, '/json/list'))
).json();
const page = targets.find((t) => t.type === 'page');
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((r) => ws.addEventListener('open', r, { once: true }));
let id = 0;
const pending = new Map();
const requests = [];
let loaded;
const loadedP = new Promise((r) => {
  loaded = r;
});
ws.addEventListener('message', (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
  if (msg.method === 'Network.requestWillBeSent') requests.push(msg.params.request.url);
  if (msg.method === 'Page.loadEventFired') loaded();
});
const send = (method, params = {}) =>
  new Promise((r) => {
    pending.set(++id, r);
    ws.send(JSON.stringify({ id, method, params }));
  });
await send('Network.enable');
await send('Page.enable');
const url = pathToFileURL(file).href;
await send('Page.navigate', { url });
await loadedP;
const evaluate = async (expression) =>
  (await send('Runtime.evaluate', { expression, returnByValue: true })).result.result.value;
const charts = await evaluate(
  `[...document.querySelectorAll('svg.chart')].map((s) => { const b = s.getBoundingClientRect(); return { width: b.width, height: b.height, marks: s.querySelectorAll('rect.bar, circle.dot, rect.cell, path.line').length }; })`,
);
const title = await evaluate('document.title');
const shot = await send('Page.captureScreenshot', { format: 'png' });
ws.close();
const gone = new Promise((r) => browser.once('exit', r));
process.kill(-browser.pid, 'SIGKILL');
await gone;
// A helper process may still be writing into the profile for a moment; what is left is in tmpdir.
try {
  rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
} catch {
  /* left behind: it does not change what was checked */
}
console.log(
  JSON.stringify({ url, title, requests, charts, screenshotBytes: Buffer.from(shot.result.data, 'base64').length }),
);
process.exit(0);
