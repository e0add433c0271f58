import assert from "node:assert/strict";
import {
  assertNeverOversubscribed,
  checkFits,
  claimIfFits,
  claimUnchecked,
  createLedger,
  heldShares,
  type Ledger,
  readLedger,
  releaseClaim,
} from "./gpu_ledger.ts";
import { waitUntil } from "./wait.ts";

const LEDGER_MODULE = new URL("./gpu_ledger.ts", import.meta.url).href;

function tempLedger(deviceGiB?: number): string {
  const dir = Deno.makeTempDirSync({ prefix: "gpu-ledger-" });
  const path = `${dir}/ledger.json`;
  createLedger(path, { deviceGiB });
  return path;
}

Deno.test("GPU ledger: claims that fit, a refusal that does not, release, high-water mark", () => {
  const path = tempLedger(24);
  const a = claimIfFits(path, { model: "a", devices: ["0", "1"], share: 0.6 });
  assert.ok(a.ok);
  assert.deepEqual(checkFits(path, { model: "b", devices: ["1"], share: 0.4 }), { ok: true });
  const b = claimIfFits(path, { model: "b", devices: ["1"], share: 0.4 });
  assert.ok(b.ok, "0.6 + 0.4 fits in 1.0 exactly");
  const c = claimIfFits(path, { model: "c", devices: ["0", "1"], share: 0.3 });
  assert.deepEqual(c, { ok: false, device: "1", free: 0, deviceGiB: 24 });
  assert.equal(checkFits(path, { model: "d", devices: ["0"], share: 0.5 }).ok, false);

  let ledger = readLedger(path);
  assert.deepEqual(heldShares(ledger), { "0": 0.6, "1": 1 });
  assert.deepEqual(ledger.refusals.map((r) => [r.kind, r.model, r.device]), [["wake", "c", "1"], [
    "startup",
    "d",
    "0",
  ]]);
  assert.equal(ledger.claims[0].pid, Deno.pid);
  assert.equal(ledger.violations.length, 0);
  assertNeverOversubscribed(path);
  assert.throws(() => assertNeverOversubscribed(path, { allowRefusals: false }), /wake of c .*refused on device 1/);

  assert.equal(releaseClaim(path, a.id), true);
  assert.equal(releaseClaim(path, a.id), false, "released once");
  ledger = readLedger(path);
  assert.deepEqual(heldShares(ledger), { "1": 0.4 });
  assert.deepEqual(ledger.highWater, { "0": 0.6, "1": 1 });
});

Deno.test("GPU ledger: an unchecked claim over 1.0 is a violation and fails the assertion loudly", () => {
  const path = tempLedger();
  assert.equal(claimUnchecked(path, { model: "a", devices: ["0"], share: 0.6 }).violations.length, 0);
  const over = claimUnchecked(path, { model: "b", devices: ["0", "1"], share: 0.6 });
  assert.equal(over.violations.length, 1);
  assert.equal(over.violations[0].device, "0");
  assert.equal(over.violations[0].by, "b");
  assert.deepEqual(over.violations[0].claims.map((c) => c.model), ["a", "b"]);
  assert.equal(readLedger(path).highWater["0"], 1.2);
  assert.throws(() => assertNeverOversubscribed(path), /device 0 held 1\.2 \(> 1\.0\) when b claimed/);
  releaseClaim(path, over.id);
  assert.throws(() => assertNeverOversubscribed(path), /oversubscription/, "a violation stays recorded");
});

Deno.test("GPU ledger: a sleeper's residue must leave room for its claim at wake, which then replaces it", () => {
  const path = tempLedger();
  const small = claimUnchecked(path, { model: "s", devices: ["0"], share: 0.4 });
  assert.deepEqual(claimIfFits(path, { model: "s", devices: ["0"], share: 0.4 }, { residueOf: small.id }), {
    ok: true,
    id: small.id,
  });
  assert.equal(readLedger(path).claims.length, 1, "held once, not twice");
  const big = claimUnchecked(path, { model: "b", devices: ["1"], share: 0.6 });
  const wake = claimIfFits(path, { model: "b", devices: ["1"], share: 0.6 }, { residueOf: big.id });
  assert.equal(wake.ok, false, "0.6 more on top of a 0.6 residue does not fit (vLLM issue 47654)");
});

Deno.test("GPU ledger: claims of a SIGKILLed process are reaped", async () => {
  const path = tempLedger();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { claimIfFits } from ${JSON.stringify(LEDGER_MODULE)};
       claimIfFits(${JSON.stringify(path)}, { model: "victim", devices: ["0"], share: 0.9 });
       console.log("claimed");
       setInterval(() => {}, 1000);`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.match((await reader.read()).value ?? "", /claimed/);
    const ledger = readLedger(path);
    assert.deepEqual(ledger.claims.map((c) => [c.model, c.pid]), [["victim", child.pid]]);
    assert.equal(claimIfFits(path, { model: "next", devices: ["0"], share: 0.5 }).ok, false);
    child.kill("SIGKILL"); // it cannot release; not yet waited for, it may linger as a zombie
    await waitUntil(() => readLedger(path).claims.length === 0, 10_000, "the dead claim to be reaped", 10);
    assert.deepEqual(readLedger(path).reaped.map((r) => [r.model, r.pid]), [["victim", child.pid]]);
    assert.equal(claimIfFits(path, { model: "next", devices: ["0"], share: 0.5 }).ok, true);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await reader.cancel();
    await child.status;
  }
});

Deno.test("GPU ledger: a claim whose pid now belongs to another process is reaped", () => {
  const path = tempLedger();
  const ledger: Ledger = readLedger(path);
  ledger.claims.push({
    id: "stale",
    pid: Deno.pid, // alive, but not the process that claimed: its start time differs
    pidStart: "1",
    model: "ghost",
    devices: ["0"],
    share: 0.9,
    since: new Date(0).toISOString(),
  });
  Deno.writeTextFileSync(path, JSON.stringify(ledger));
  assert.deepEqual(readLedger(path).claims, []);
  assert.equal(readLedger(path).reaped[0].model, "ghost");
});

Deno.test("GPU ledger: concurrent writers from several processes lose no update", async () => {
  const path = tempLedger();
  const writers = Array.from({ length: 4 }, (_, i) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { claimUnchecked } from ${JSON.stringify(LEDGER_MODULE)};
         for (let n = 0; n < 25; n++) claimUnchecked(${
          JSON.stringify(path)
        }, { model: "w${i}", devices: ["0"], share: 0.001 });`,
      ],
      stdout: "null",
      stderr: "inherit",
    }).output());
  const results = await Promise.all(writers);
  assert.ok(results.every((r) => r.success));
  // Every claim was written (each writer has exited since, so each one is reaped exactly once).
  const ledger = readLedger(path);
  assert.equal(ledger.claims.length, 0);
  assert.equal(ledger.reaped.length, 100);
  for (let i = 0; i < 4; i++) assert.equal(ledger.reaped.filter((r) => r.model === `w${i}`).length, 25);
});

Deno.test("GPU ledger: a missing file reads empty; a corrupt one fails loudly", () => {
  const dir = Deno.makeTempDirSync({ prefix: "gpu-ledger-" });
  assert.deepEqual(readLedger(`${dir}/none.json`).claims, []);
  Deno.writeTextFileSync(`${dir}/bad.json`, "{not json");
  assert.throws(() => readLedger(`${dir}/bad.json`), /GPU ledger .*bad\.json is not JSON/);
  Deno.writeTextFileSync(`${dir}/old.json`, '{"version":0}');
  assert.throws(() => readLedger(`${dir}/old.json`), /not a version-1 ledger/);
  assert.throws(() => createLedger(`${dir}/x.json`, { deviceGiB: 0 }), /deviceGiB must be positive/);
});
