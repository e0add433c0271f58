import assert from "node:assert/strict";
import { createLogger, tapLogger } from "../../lib/log.ts";

Deno.test("log: a field named like a line's own key (level, msg, time) never disguises the line", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", write: (line) => lines.push(line) });
  log.info("engine asleep", { model: "a", level: 1, msg: "spoofed", time: "then" });
  const record = JSON.parse(lines[0]);
  assert.equal(record.level, "info");
  assert.equal(record.msg, "engine asleep");
  assert.notEqual(record.time, "then");
  assert.equal(record.model, "a");

  const tapped: string[] = [];
  const tap = tapLogger(createLogger({ write: () => {} }), { accepts: () => true, write: (json) => tapped.push(json) });
  tap.warn("x", { level: 2 });
  assert.equal(JSON.parse(tapped[0]).level, "warn");
});
