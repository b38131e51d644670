/**
 * The notes page: starts this tab's device in a worker (worker.ts), pairs
 * it with the library through the server that served the page (serve.mjs),
 * and shows the notes and a status line from `status()`. `window.notes` is
 * the same API for scripts (the browser test drives the page through it).
 * A tab is one device; `?device=NAME` picks which (default `tab-1`).
 */
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let nextId = 0;
const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
const element = (id: string) => document.getElementById(id) as HTMLElement;

function call<T>(method: string, ...args: unknown[]): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
    worker.postMessage({ id, method, args });
  });
}

interface StatusLine {
  device: string;
  keyGeneration: number;
  pendingUploads: number;
  lastError: string | undefined;
  alarms: string[];
  removed: boolean;
  devices: number;
}

let lastStatus: StatusLine | undefined;

function showStatus(status: StatusLine): void {
  lastStatus = status;
  const parts = [`key generation ${status.keyGeneration}`, `${status.devices} devices`, `${status.pendingUploads} pending uploads`];
  if (status.removed) parts.push('removed from the library');
  if (status.alarms.length > 0) parts.push(`alarms: ${status.alarms.join(', ')}`);
  if (status.lastError !== undefined) parts.push(`last error: ${status.lastError}`);
  element('status').textContent = `status: ${parts.join(' · ')}`;
}

async function refresh(): Promise<void> {
  const notes = await call<[string, string][]>('notes');
  const list = element('notes');
  list.replaceChildren(
    ...notes.map(([, text]) => {
      const item = document.createElement('li');
      item.textContent = text;
      return item;
    }),
  );
}

worker.addEventListener('message', (event: MessageEvent) => {
  const data = event.data as { id?: number; result?: unknown; error?: string; status?: StatusLine };
  if (data.status !== undefined) {
    showStatus(data.status);
    void refresh().catch(() => undefined);
    return;
  }
  const waiting = pending.get(data.id as number);
  if (waiting === undefined) return;
  pending.delete(data.id as number);
  if (data.error !== undefined) waiting.reject(new Error(data.error));
  else waiting.resolve(data.result);
});

async function start(): Promise<{ eventsAtOpen: number; deviceId: string }> {
  const name = new URLSearchParams(location.search).get('device') ?? 'tab-1';
  const invitation = await call<{ deviceId: string; publicKey: string; x25519PublicKey: string }>('identity', name);
  element('device').textContent = `device ${name} (${invitation.deviceId.slice(0, 12)}…)`;
  // Pairing: the page hands its invitation (public keys only) to the owner device behind the server.
  const paired = await fetch('./pair', { method: 'POST', body: JSON.stringify(invitation) });
  if (!paired.ok) throw new Error(`pairing failed: ${await paired.text()}`);
  const config = (await paired.json()) as { servers: string; bucket: string; library: unknown };
  const { eventsAtOpen } = await call<{ eventsAtOpen: number }>('start', config);
  showStatus(await call<StatusLine>('status'));
  await refresh();
  return { eventsAtOpen, deviceId: invitation.deviceId };
}

const ready = start();
ready.catch((error: Error) => {
  element('status').textContent = `status: failed: ${error.message}`;
});

let counter = 0;
element('add').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = element('text') as HTMLInputElement;
  const text = input.value.trim();
  if (text === '') return;
  input.value = '';
  void notes.add(text);
});

const notes = {
  ready,
  async add(text: string, key = `${Date.now().toString(36)}-${counter++}-${Math.random().toString(36).slice(2, 8)}`) {
    await ready;
    await call('add', key, text);
    await refresh();
  },
  list: async () => (await call<[string, string][]>('notes')).map(([, text]) => text).sort(),
  status: () => call<StatusLine>('status'),
  lastStatus: () => lastStatus,
  waitUntilCaughtUp: (timeoutMs = 30_000) => call('waitUntilCaughtUp', timeoutMs),
  scan: (needle: string) => call<string[]>('scan', needle),
  close: () => call('close'),
};

(globalThis as unknown as { notes: typeof notes }).notes = notes;
