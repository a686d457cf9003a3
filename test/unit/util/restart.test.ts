/**
 * The daemon's restart with its start settings (src/cli/restart.ts): glibc's huge-page malloc and
 * a small young generation. When each is set, and that a real `shoal daemon` runs with both under
 * its own PID.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { DAEMON_SEMI_SPACE_MIB, daemonRestart, hugePageEnv, semiSpaceArgs, thpMode } from '../../../src/cli/restart.js'
import { freePort, removeDir, SHOAL_MAIN, startProcess, tempDir, waitFor } from '../../cli/harness.js'

const DAEMON = ['node', 'main.js', 'daemon', '--listen', '127.0.0.1:5000']
const madvise = (): string => 'madvise'

describe("the daemon's restart with its start settings", () => {
  it('restarts only the daemon, on Linux, adding the tunable to any others', () => {
    assert.equal(hugePageEnv(DAEMON, { PATH: '/bin' }, 'linux', madvise)?.GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1')
    assert.equal(hugePageEnv(DAEMON, { PATH: '/bin' }, 'linux', madvise)?.PATH, '/bin')
    assert.equal(
      hugePageEnv(DAEMON, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, 'linux', madvise)?.GLIBC_TUNABLES,
      'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1',
    )
    // THP unknown (no sysfs file): glibc's madvise is harmless, so the daemon still restarts.
    assert.ok(hugePageEnv(DAEMON, {}, 'linux', () => undefined) !== undefined)
    assert.equal(hugePageEnv(['node', 'main.js', 'pull', 'alpine'], {}, 'linux', madvise), undefined)
    assert.equal(hugePageEnv(['node', 'main.js'], {}, 'linux', madvise), undefined)
    assert.equal(hugePageEnv(DAEMON, {}, 'darwin', madvise), undefined)
  })

  it("leaves the operator's choice alone: the tunable already set (even =0), SHOAL_HUGE_PAGES=off, THP never", () => {
    assert.equal(hugePageEnv(DAEMON, { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }, 'linux', madvise), undefined)
    assert.equal(
      hugePageEnv(DAEMON, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2' }, 'linux', madvise),
      undefined,
    )
    assert.equal(hugePageEnv(DAEMON, { SHOAL_HUGE_PAGES: 'off' }, 'linux', madvise), undefined)
    assert.equal(hugePageEnv(DAEMON, { SHOAL_HUGE_PAGES: 'OFF' }, 'linux', madvise), undefined)
    assert.equal(
      hugePageEnv(DAEMON, {}, 'linux', () => 'never'),
      undefined,
    )
  })

  it("sets the young generation's size for the daemon unless Node's flags or NODE_OPTIONS name it", () => {
    const flag = `--max-semi-space-size=${DAEMON_SEMI_SPACE_MIB}`
    assert.deepEqual(semiSpaceArgs(DAEMON, [], {}), [flag])
    assert.deepEqual(semiSpaceArgs(DAEMON, ['--enable-source-maps'], { NODE_OPTIONS: '--trace-warnings' }), [flag])
    assert.deepEqual(semiSpaceArgs(['node', 'main.js', 'pull', 'alpine'], [], {}), [])
    assert.deepEqual(semiSpaceArgs(DAEMON, ['--max-semi-space-size=16'], {}), [])
    assert.deepEqual(semiSpaceArgs(DAEMON, ['--max_semi_space_size=8'], {}), [])
    assert.deepEqual(semiSpaceArgs(DAEMON, [], { NODE_OPTIONS: '--enable-source-maps  --max-semi-space-size=32' }), [])
    assert.deepEqual(semiSpaceArgs(DAEMON, ['--max-semi-space-size', '16'], {}), [])
  })

  it('restarts with whichever of the two is missing, once', () => {
    const both = daemonRestart(DAEMON, ['--enable-source-maps'], { PATH: '/bin' }, 'linux', madvise)
    assert.deepEqual(both?.execArgv, ['--enable-source-maps', `--max-semi-space-size=${DAEMON_SEMI_SPACE_MIB}`])
    assert.equal(both?.env.GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1')
    // The restarted process has both: no second restart.
    assert.equal(daemonRestart(DAEMON, both?.execArgv ?? [], both?.env ?? {}, 'linux', madvise), undefined)
    // Huge pages off (or not Linux): the flag alone, the environment as it was.
    const flagOnly = daemonRestart(DAEMON, [], { SHOAL_HUGE_PAGES: 'off' }, 'linux', madvise)
    assert.deepEqual(flagOnly?.execArgv, [`--max-semi-space-size=${DAEMON_SEMI_SPACE_MIB}`])
    assert.deepEqual(flagOnly?.env, { SHOAL_HUGE_PAGES: 'off' })
    assert.ok(daemonRestart(DAEMON, [], {}, 'darwin', madvise)?.env.GLIBC_TUNABLES === undefined)
    // The tunable alone, when the operator chose the young generation's size.
    const envOnly = daemonRestart(DAEMON, ['--max-semi-space-size=16'], {}, 'linux', madvise)
    assert.deepEqual(envOnly?.execArgv, ['--max-semi-space-size=16'])
    assert.equal(envOnly?.env.GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1')
    assert.equal(daemonRestart(['node', 'main.js', 'gc'], [], {}, 'linux', madvise), undefined)
  })

  it("a real daemon runs with the tunable and the young generation's size under the PID it was started with, and says so", async (t) => {
    if (process.platform !== 'linux') return t.diagnostic('not Linux: the daemon is never restarted')
    const dir = await tempDir('shoal-hugepages-')
    const port = await freePort()
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }
    const args = [SHOAL_MAIN, 'daemon', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')]
    const daemon = startProcess(
      process.execPath,
      [...args, '--default-upstream', 'http://127.0.0.1:9'],
      join(dir, 'daemon.log'),
      env,
    )
    try {
      await waitFor('the daemon', async () => (await daemon.log()).includes('shoal daemon ready'), daemon, 30_000)
      const line = (await daemon.log()).split('\n').find((l) => l.includes('shoal daemon ready'))
      const ready = JSON.parse(line ?? '{}') as { glibcTunables?: string; nodeFlags?: string }
      const environ = readFileSync(`/proc/${daemon.pid}/environ`, 'utf8').split('\0')
      const cmdline = readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a !== '')
      // Node's flags: the young generation's size, before the script, whatever THP's mode.
      assert.equal(cmdline[1], `--max-semi-space-size=${DAEMON_SEMI_SPACE_MIB}`)
      assert.equal(ready.nodeFlags, `--max-semi-space-size=${DAEMON_SEMI_SPACE_MIB}`)
      // The restart keeps the rest of the command line as it was.
      assert.deepEqual(cmdline.slice(2, 2 + args.length), args)
      if (thpMode() === 'never') {
        assert.ok(!environ.some((e) => e.startsWith('GLIBC_TUNABLES=')), 'no restart when THP is never')
        assert.equal(ready.glibcTunables, undefined)
      } else {
        assert.ok(environ.includes('GLIBC_TUNABLES=glibc.malloc.hugetlb=1'), 'the same PID runs with the tunable')
        assert.equal(ready.glibcTunables, 'glibc.malloc.hugetlb=1')
      }
    } finally {
      await daemon.stop()
      await removeDir(dir)
    }
  })
})
