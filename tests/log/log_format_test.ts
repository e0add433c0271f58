import assert from "node:assert/strict";
import fc from "fast-check";
import { createLogger, type LogFields } from "../../lib/log.ts";

/**
 * What a line was before the text fast path: JSON.stringify of the whole record (the replacer aside), the line's
 * own time, level and msg winning over fields of those names, in place.
 */
function expected(time: string, level: string, msg: string, base: LogFields, fields: LogFields): string {
  const record: LogFields = { time, level, msg, ...base, ...fields };
  Object.assign(record, { time, level, msg });
  return JSON.stringify(record, (_k, v) => typeof v === "bigint" ? String(v) : v);
}

const key = fc.oneof(
  fc.constantFrom("id", "status", "model", "time", "msg", "level", "component", "0", "12", "01", "a b", 'q"uote'),
  fc.string({ maxLength: 6 }),
);
const value = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt({ min: -10n, max: 10n }),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.record({ x: fc.integer() }),
);
const fieldsOf = fc.dictionary(key, value, { maxKeys: 6 });

Deno.test("log: a JSON line is the record's JSON, whatever the fields (fast path and fallback alike)", () => {
  fc.assert(
    fc.property(fieldsOf, fieldsOf, fc.string(), (base, fields, msg) => {
      const lines: string[] = [];
      const root = createLogger({ format: "json", level: "debug", write: (l) => lines.push(l) });
      const log = Object.keys(base).length ? root.with(base) : root;
      log.info(msg, fields);
      assert.equal(lines.length, 1);
      const time = JSON.parse(lines[0]).time;
      assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const want = expected(time, "info", msg, base, fields);
      // Objects and arrays go through the replacer path; its output for them is the record's JSON too.
      assert.equal(lines[0], want);
    }),
    { numRuns: 500 },
  );
});

Deno.test("log: secrets are masked on the fast path too", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", secrets: ["sk-verysecret"], write: (l) => lines.push(l) });
  log.info("request", { id: "sk-verysecret", status: 200 });
  assert.equal(JSON.parse(lines[0]).id, "[redacted]");
});

Deno.test("log: the default writer keeps the order of lines across stdout and stderr, and writes all before exit", async () => {
  const log = new URL("../../lib/log.ts", import.meta.url).href;
  const script = `
    import { createLogger } from ${JSON.stringify(log)};
    const log = createLogger({ format: "json" });
    log.info("one"); log.info("two");
    log.warn("three");
    log.info("four");
    setTimeout(() => { log.info("five"); log.error("six"); log.info("seven"); Deno.exit(0); }, 0);
  `;
  // stdout and stderr into one pipe, as a container runtime or a terminal shows them.
  const out = await new Deno.Command("sh", {
    args: ["-c", '"$0" eval "$1" 2>&1', Deno.execPath(), script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  const messages = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l).msg);
  assert.deepEqual(messages, ["one", "two", "three", "four", "five", "six", "seven"]);
});
