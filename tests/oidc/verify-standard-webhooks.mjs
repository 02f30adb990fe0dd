// Verifies deliveries with the published Standard Webhooks library (npm `standardwebhooks`,
// pinned in package-lock.json), for the worker's interop tests: not our code checking our code.
//
// stdin: one JSON object per line: {"secret": "whsec_…", "headers": {name: value}, "body": "…"}
// stdout: one line per input: {"ok": true} or {"ok": false, "error": "<the library's message>"}
// The library also refuses a `webhook-timestamp` more than 5 minutes from now.
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const { secret, headers, body } = JSON.parse(line);
    new Webhook(secret).verify(body, headers);
    answer = { ok: true };
  } catch (error) {
    answer = { ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
