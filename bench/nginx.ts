/**
 * nginx as the reference reverse proxy: Debian's package (installed with
 * apt-get when missing, if that is possible), a config generated in a temp
 * dir, loopback only, one worker (vllm-chill runs its JavaScript on one
 * thread), keep-alive to the engine, no buffering, an access log like the
 * proxy's request log.
 *
 * @module
 */
import { type Child, hasProgram, run, sleep, spawnLogged } from "./procs.ts";
import { freePort } from "./proxy.ts";

/** A running nginx. */
export interface Nginx {
  readonly url: string;
  readonly version: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/**
 * Makes sure nginx is installed; returns a reason when it cannot be.
 *
 * @example
 * ```ts ignore
 * import { ensureNginx } from "./nginx.ts";
 * const missing = await ensureNginx(); // null when installed
 * ```
 */
export async function ensureNginx(): Promise<string | null> {
  if (await hasNginx()) return null;
  for (const pkg of ["nginx-light", "nginx"]) {
    try {
      let res = await run(["apt-get", "install", "-y", pkg], 180_000);
      if (res.code !== 0) {
        await run(["apt-get", "update"], 180_000);
        res = await run(["apt-get", "install", "-y", pkg], 180_000);
      }
      if (res.code === 0 && await hasNginx()) return null;
    } catch { /* no apt-get or no permission */ }
  }
  return "nginx is not installed and `apt-get install -y nginx-light` failed";
}

async function hasNginx(): Promise<boolean> {
  return await hasProgram("nginx") || await Deno.stat("/usr/sbin/nginx").then(() => true, () => false);
}

/**
 * Starts nginx proxying to `upstream` (host:port).
 *
 * @example
 * ```ts ignore
 * import { startNginx } from "./nginx.ts";
 * const nginx = await startNginx("/tmp/bench", "127.0.0.1:8000");
 * await nginx.stop();
 * ```
 */
export async function startNginx(dir: string, upstream: string): Promise<Nginx> {
  const port = freePort();
  const prefix = `${dir}/nginx`;
  await Deno.mkdir(`${prefix}/logs`, { recursive: true });
  const conf = `${prefix}/nginx.conf`;
  await Deno.writeTextFile(
    conf,
    `user root;
worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log ${prefix}/logs/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  upstream engine { server ${upstream}; keepalive 512; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`,
  );
  const bin = await hasProgram("nginx") ? "nginx" : "/usr/sbin/nginx";
  const version = (await run([bin, "-v"], 10_000)).stderr.trim().replace(/^nginx version: /, "");
  const child = spawnLogged([bin, "-p", prefix, "-c", conf], `${prefix}/logs/stdout.log`);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await fetch(`${url}/health`).then(async (r) => (await r.body?.cancel(), true), () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nginx did not start: ${await child.output()}`);
    await sleep(20);
  }
  return { url, version, child, stop: () => child.stop(5000) };
}
