/**
 * The lab in CI: a small P1 (3 nodes, 32 MiB, shaped links: origin 100 Mbit/s, nodes 1 Gbit/s)
 * through real network namespaces, docker-registry and skopeo. Correctness only: every digest
 * right, origin bytes ≤ 1.2 × image, and every process and namespace gone afterwards.
 *
 * Needs root (network namespaces, tc). Where they are not permitted the test fails with the reason.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { listNamespaces, netnsPermitted } from '../../bench/lab/netns.js'
import { pidAlive } from '../../bench/lab/proc.js'
import { DEFAULTS, renderReport, runLab } from '../../bench/lab/run.js'

test('lab: small cold herd (P1, 3 nodes, 32 MiB, shaped links) through Shoal', { timeout: 150_000 }, async (t) => {
  const why = await netnsPermitted()
  // Like the e2e tests, this needs root and network namespaces; without them it fails with the reason.
  assert.equal(why, undefined, `the lab test needs network namespaces and tc as root, and cannot run here: ${why}`)
  const outDir = await mkdtemp(join('/tmp', 'shlab-ci-'))
  const lines: string[] = []
  try {
    const result = await runLab({
      ...DEFAULTS,
      scenarios: ['P1'],
      runs: 1,
      nodes: 3,
      sizeMiB: 32,
      layers: 4,
      originMbit: 100,
      nodeMbit: 1000,
      baselines: [],
      maxMinutes: 2,
      outDir,
      log: (line) => lines.push(line),
    })
    const report = renderReport(result)
    t.diagnostic(report)
    const context = `\n${lines.join('\n')}\n${report}`
    assert.deepEqual(result.errors, [], `lab errors:${context}`)
    const run = result.runs[0]
    assert.ok(run !== undefined && result.runs.length === 1, `one run expected:${context}`)
    assert.equal(run.system, 'shoal')
    assert.equal(run.nodeResults.length, 3)
    for (const n of run.nodeResults) {
      assert.equal(n.exit, 'code 0', `node ${n.node}: client ${n.exit} ${n.error ?? ''}${context}`)
      assert.equal(n.digestsOk, true, `node ${n.node}: ${n.error ?? 'digests not checked'}${context}`)
      const total = (n.bytesBySource?.origin ?? 0) + (n.bytesBySource?.peer ?? 0) + (n.bytesBySource?.cache ?? 0)
      assert.ok(total >= run.imageBytes - 1024, `node ${n.node}: daemon counted ${total} blob bytes${context}`)
    }
    assert.ok(run.originBytes > 0, `origin interface counted nothing${context}`)
    assert.ok(
      run.originRatio <= 1.2,
      `origin sent ${run.originBytes} bytes = ${run.originRatio.toFixed(2)} × the image (limit 1.2)${context}`,
    )
    // Everything the lab started is gone, and so are its namespaces.
    const alive = result.pids.filter((pid) => pidAlive(pid))
    assert.deepEqual(alive, [], `processes still running after the lab: ${alive.join(' ')}`)
    assert.ok(result.pids.length >= 3 + 3 + 2, `lab recorded only ${result.pids.length} PIDs`)
    const left = (await listNamespaces()).filter((ns) => result.namespaces.includes(ns))
    assert.deepEqual(left, [], `namespaces left after the lab: ${left.join(' ')}`)
    assert.equal(result.namespaces.length, 1 + 1 + 3)
  } finally {
    await rm(outDir, { recursive: true, force: true })
  }
})
