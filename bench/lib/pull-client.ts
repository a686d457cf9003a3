/**
 * Spawned by the p2p phase (`node pull-client.js`): the receiving client, in its own process so
 * that its CPU time can be read from /proc and it competes with the servers like a real client.
 * Reads one JSON command a line on stdin ({url, expectBytes, hash, timeoutMs}), pulls the blob
 * with the bench's undici client (a fresh connection each time) and answers one JSON line on
 * stdout: the PullResult, or {error}. Says {"ready":true} first (after its imports loaded); exits
 * when stdin closes.
 */
import { createInterface } from 'node:readline'
import { newAgent, pullBlob } from './client.js'
import type { PullCommand } from './types.js'

const lines = createInterface({ input: process.stdin })
process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
for await (const line of lines) {
  if (line.trim() === '') continue
  let answer: unknown
  const agent = newAgent(1)
  try {
    const cmd = JSON.parse(line) as PullCommand
    answer = await pullBlob(cmd.url, {
      dispatcher: agent,
      hash: cmd.hash,
      expectBytes: cmd.expectBytes,
      timeoutMs: cmd.timeoutMs,
    })
  } catch (err) {
    answer = { error: err instanceof Error ? err.message : String(err) }
  } finally {
    await agent.close().catch(() => undefined)
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`)
}
