/**
 * deploy/systemd/shoal.service: parsed section by section; hardened; ExecStart's flags are ones
 * the daemon has (`shoal daemon --help` of the built CLI); its paths are the directories systemd
 * makes; `systemd-analyze verify` is clean where systemd is installed.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { SHUTDOWN_GRACE_MS } from '../../src/constants.js'
import { cli, ROOT } from './support.js'

type Unit = Record<string, Record<string, string[]>>

/** A systemd unit file: sections of keys, each with every value it was given, in order. */
function parseUnit(text: string): Unit {
  const unit: Unit = {}
  let section: Record<string, string[]> | undefined
  let pending = ''
  text.split('\n').forEach((raw, i) => {
    const line = (pending + raw.trim()).trim()
    pending = ''
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return
    if (line.endsWith('\\')) {
      pending = `${line.slice(0, -1)} `
      return
    }
    const s = /^\[([^\]]+)\]$/.exec(line)
    if (s !== null) {
      assert.equal(unit[s[1]!], undefined, `line ${i + 1}: section [${s[1]}] twice`)
      section = {}
      unit[s[1]!] = section
      return
    }
    const kv = /^([A-Za-z0-9]+)\s*=\s*(.*)$/.exec(line)
    assert.ok(kv !== null, `line ${i + 1}: not KEY=VALUE: ${line}`)
    assert.ok(section !== undefined, `line ${i + 1}: a key before any section`)
    section[kv[1]!] ??= []
    section[kv[1]!]!.push(kv[2]!)
  })
  return unit
}

const unitPath = join(ROOT, 'deploy/systemd/shoal.service')
const text = readFileSync(unitPath, 'utf8')
const unit = parseUnit(text)
const service = unit.Service!

/** The one value of a key (a key given twice would be a mistake here). */
function value(key: string, section = service): string | undefined {
  const v = section[key]
  if (v === undefined) return undefined
  assert.equal(v.length, 1, `${key} given ${v.length} times`)
  return v[0]
}

const yes = (v: string | undefined): boolean => ['yes', 'true', '1', 'on'].includes(v ?? '')

describe('deploy/systemd/shoal.service', () => {
  test('has the sections and starts after the network, before the runtimes', () => {
    assert.deepEqual(Object.keys(unit), ['Unit', 'Service', 'Install'])
    assert.match(value('After', unit.Unit)!, /network-online\.target/)
    assert.match(value('Wants', unit.Unit)!, /network-online\.target/)
    assert.match(value('Before', unit.Unit)!, /containerd\.service/)
    assert.equal(value('WantedBy', unit.Install), 'multi-user.target')
  })

  test('is hardened', () => {
    // An unprivileged user: systemd's dynamic user, or a named one that is not root.
    if (!yes(value('DynamicUser'))) {
      const user = value('User')
      assert.ok(user !== undefined && !['root', '0'].includes(user), 'DynamicUser=yes or User=<not root>')
    }
    assert.equal(value('StateDirectory'), 'shoal')
    assert.ok(['on-failure', 'always'].includes(value('Restart') ?? ''), 'Restart')
    assert.ok(yes(value('NoNewPrivileges')))
    assert.ok(['strict', 'full', 'yes', 'true'].includes(value('ProtectSystem') ?? ''))
    for (const key of [
      'ProtectHome',
      'PrivateTmp',
      'PrivateDevices',
      'ProtectKernelTunables',
      'ProtectKernelModules',
    ]) {
      assert.ok(yes(value(key)) || value(key) === 'read-only', key)
    }
    assert.equal(value('CapabilityBoundingSet'), '', 'no capability at all (ports are above 1024)')
    // The swarm: TCP over IPv4/IPv6, and netlink, through which Node lists the interfaces.
    const families = value('RestrictAddressFamilies')!.split(/\s+/)
    for (const f of ['AF_INET', 'AF_INET6', 'AF_NETLINK']) assert.ok(families.includes(f), f)
    // V8 compiles code at run time: this one would kill node at start.
    assert.ok(!yes(value('MemoryDenyWriteExecute')), 'MemoryDenyWriteExecute breaks V8')
    // SIGTERM, and time for the daemon's own shutdown bound before systemd kills it.
    assert.equal(value('KillSignal') ?? 'SIGTERM', 'SIGTERM')
    assert.ok(Number.parseInt(value('TimeoutStopSec')!, 10) * 1000 > SHUTDOWN_GRACE_MS, 'TimeoutStopSec')
  })

  test("ExecStart runs the daemon with flags it has, on systemd's directories", () => {
    const words = value('ExecStart')!.split(/\s+/)
    const at = words.findIndex((w) => w.endsWith('dist/src/cli/main.js'))
    assert.ok(at > 0, 'ExecStart runs dist/src/cli/main.js')
    assert.equal(words[at + 1], 'daemon')
    const help = cli(['daemon', '--help'])
    assert.equal(help.status, 0, help.stderr)
    const flags = new Map<string, string | undefined>()
    for (let i = at + 2; i < words.length; i++) {
      const w = words[i]!
      assert.match(w, /^--[a-z-]+$/, `ExecStart: "${w}" is not a flag`)
      const next = words[i + 1]
      const arg = next !== undefined && !next.startsWith('--') ? next : undefined
      if (arg !== undefined) i++
      flags.set(w, arg)
    }
    assert.ok(flags.size > 0)
    for (const flag of flags.keys()) {
      assert.match(help.stdout, new RegExp(`(^|[\\s,])${flag}([\\s=<]|$)`, 'm'), `shoal daemon --help has no ${flag}`)
    }
    // The data dir is the StateDirectory (the only place the service may write), the config
    // file is in the ConfigurationDirectory.
    assert.equal(flags.get('--data-dir'), `/var/lib/${value('StateDirectory')}`)
    assert.ok(flags.get('--config')?.startsWith(`/etc/${value('ConfigurationDirectory')}/`))
    // The swarm-key variable that the commented credential lines set is one the daemon reads.
    assert.match(text, /^#Environment=SHOAL_SWARM_KEY=%d\/swarm\.key$/m)
    assert.match(help.stdout, /SHOAL_SWARM_KEY/)
  })

  test('systemd-analyze verify is clean, with the swarm-key credential lines too', (t) => {
    const which = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
    if (which.error !== undefined) {
      t.diagnostic('systemd-analyze is not installed: skipped')
      return
    }
    const dir = mkdtempSync(join(tmpdir(), 'shoal-unit-'))
    try {
      const variants = {
        plain: text,
        swarm: text.replace(/^#(LoadCredential=|Environment=SHOAL_SWARM_KEY)/gm, '$1'),
      }
      assert.notEqual(variants.swarm, text)
      for (const [name, body] of Object.entries(variants)) {
        const file = join(dir, 'shoal.service')
        writeFileSync(file, body)
        const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 15_000 })
        const out = `${r.stdout}${r.stderr}`
        assert.equal(r.status, 0, `${name}: ${out}`)
        // Unknown keys are only warned about: a warning here is a typo.
        assert.doesNotMatch(out, /shoal\.service/, `${name}: ${out}`)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
