/**
 * The Dockerfile, checked without a container engine: two stages on Node 24, a non-root runtime
 * user, a HEALTHCHECK that works (run here against a real daemon), an exec-form ENTRYPOINT (so
 * SIGTERM reaches node) pointing at a file the build produces, the runtime stage taking dist and
 * node_modules from the build stage only, no secret in the image or its build context.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, get, NODE, ROOT, startDaemon, startOrigin } from './support.js'

interface Instruction {
  op: string
  args: string
  line: number
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending = ''
  let start = 0
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd()
    if (pending === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) return
    if (pending !== '' && line.trimStart().startsWith('#')) return
    if (pending === '') start = i + 1
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `
      return
    }
    pending += line
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(pending)
    assert.ok(m !== null, `Dockerfile:${start}: cannot parse "${pending}"`)
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start })
    pending = ''
  })
  assert.equal(pending, '', 'Dockerfile ends inside a continuation')
  return out
}

interface Stage {
  from: string
  name: string | undefined
  body: Instruction[]
}

function stages(ins: Instruction[]): Stage[] {
  const out: Stage[] = []
  for (const i of ins) {
    if (i.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args)
      assert.ok(m !== null, `FROM at line ${i.line}`)
      out.push({ from: m[1]!, name: m[2], body: [] })
    } else {
      assert.ok(out.length > 0, `${i.op} before FROM at line ${i.line}`)
      out[out.length - 1]!.body.push(i)
    }
  }
  return out
}

/** An exec-form argument (JSON array of strings), or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined
  const v = JSON.parse(args) as unknown
  assert.ok(Array.isArray(v) && v.every((s) => typeof s === 'string'), `not a JSON array of strings: ${args}`)
  return v as string[]
}

/** COPY/ADD: flags, sources, destination. */
function copyArgs(i: Instruction): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = execForm(i.args) ?? i.args.split(/\s+/)
  const flags: Record<string, string> = {}
  while (words[0]?.startsWith('--')) {
    const [k, v] = words.shift()!.slice(2).split('=', 2)
    flags[k!] = v ?? 'true'
  }
  const dest = words.pop()!
  return { flags, sources: words, dest }
}

/** .dockerignore semantics: the last matching pattern wins; a pattern also matches a parent. */
function dockerignored(patterns: string[], path: string): boolean {
  const toRegex = (glob: string): RegExp =>
    new RegExp(
      `^${glob
        .replace(/^\/+|\/+$/g, '')
        .split(/(\*\*|\*|\?)/)
        .map((t) =>
          t === '**' ? '.*' : t === '*' ? '[^/]*' : t === '?' ? '[^/]' : t.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('')}$`,
    )
  const parts = path.split('/')
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
  let ignored = false
  for (const p of patterns) {
    const negate = p.startsWith('!')
    const re = toRegex(negate ? p.slice(1) : p)
    if (prefixes.some((x) => re.test(x))) ignored = !negate
  }
  return ignored
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const ins = parseDockerfile(dockerfile)
const all = stages(ins)
const runtime = all[all.length - 1]!
const ignorePatterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'))

function last(stage: Stage, op: string): Instruction | undefined {
  return stage.body.filter((i) => i.op === op).pop()
}

describe('Dockerfile', () => {
  test('is multi-stage on Node 24', () => {
    assert.ok(all.length >= 2, 'a build stage and a runtime stage')
    for (const s of all) assert.match(s.from, /^(docker\.io\/(library\/)?)?node:24([.-]|$)/, `FROM ${s.from}`)
    assert.ok(all[0]!.name !== undefined, 'the build stage is named')
  })

  test('runs as a non-root user', () => {
    const user = last(runtime, 'USER')
    assert.ok(user !== undefined, 'the runtime stage sets USER')
    assert.doesNotMatch(user.args, /^(root|0)(:|$)/)
    // The image's "node" user is uid 1000, the uid the Kubernetes DaemonSet runs it as.
    assert.equal(user.args, 'node')
  })

  test('the ENTRYPOINT is exec form and runs the file the build produces', () => {
    const entry = execForm(last(runtime, 'ENTRYPOINT')?.args ?? '')
    assert.ok(entry !== undefined, 'ENTRYPOINT must be exec form (JSON) so that SIGTERM reaches node')
    assert.equal(entry[0], 'node')
    const cmd = execForm(last(runtime, 'CMD')?.args ?? '')
    assert.deepEqual(cmd, ['daemon'])
    // The script: where the runtime stage's COPY put dist/src, compiled from src/.
    const workdir = last(runtime, 'WORKDIR')!.args
    const script = posix.resolve(workdir, entry[1]!)
    const distCopy = runtime.body
      .filter((i) => i.op === 'COPY')
      .map(copyArgs)
      .find((c) => c.sources.some((s) => s.endsWith('/dist/src')))
    assert.ok(distCopy !== undefined, 'the runtime stage copies dist/src')
    const distDir = posix.resolve(workdir, distCopy.dest)
    assert.ok(script.startsWith(`${distDir}/`), `${script} is not under ${distDir}`)
    const source = join(ROOT, 'src', posix.relative(distDir, script).replace(/\.js$/, '.ts'))
    assert.ok(existsSync(source), `${source} does not exist`)
    assert.equal(last(runtime, 'STOPSIGNAL')?.args ?? 'SIGTERM', 'SIGTERM')
  })

  test('the runtime stage takes dist and node_modules from the build stage only', () => {
    const build = all[0]!.name!
    const copies = runtime.body.filter((i) => i.op === 'COPY' || i.op === 'ADD')
    assert.ok(copies.length > 0)
    for (const i of copies) {
      const c = copyArgs(i)
      assert.equal(i.op, 'COPY', `line ${i.line}: ADD`)
      assert.equal(c.flags.from, build, `line ${i.line}: the runtime stage copies from the build stage only`)
    }
    const sources = copies.flatMap((i) => copyArgs(i).sources)
    assert.ok(sources.includes('/src/node_modules'), 'node_modules from the build stage')
    assert.ok(sources.includes('/src/dist/src'), 'dist/src from the build stage')
    // The build stage prunes dev dependencies before the runtime stage copies node_modules.
    assert.ok(all[0]!.body.some((i) => i.op === 'RUN' && /npm prune --omit=dev/.test(i.args)))
  })

  test('has a HEALTHCHECK that passes against a running daemon and fails without one', async () => {
    const hc = last(runtime, 'HEALTHCHECK')
    assert.ok(hc !== undefined && !/^NONE$/i.test(hc.args), 'HEALTHCHECK present')
    const m = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(hc.args)
    assert.ok(m !== null, `HEALTHCHECK ${hc.args}`)
    const timeout = /--timeout=(\d+)s/.exec(m[1]!)
    assert.ok(timeout !== null && Number(timeout[1]) >= 3, '--timeout of a few seconds')
    const cmd = execForm(m[2]!)
    assert.ok(cmd !== undefined && cmd[0] === 'node', 'exec-form node command')

    const [port, admin] = await Promise.all([freePort(), freePort()])
    const dir = mkdtempSync(join(tmpdir(), 'shoal-hc-'))
    const check = (env: Record<string, string>): number | null =>
      spawnSync(NODE, cmd.slice(1), { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 }).status
    assert.equal(check({ SHOAL_LISTEN: `0.0.0.0:${port}` }), 1, 'no daemon: unhealthy')
    assert.equal(check({ SHOAL_ADMIN_LISTEN: `127.0.0.1:${admin}` }), 1, 'no daemon: unhealthy')
    const origin = await startOrigin()
    const daemon = startDaemon({
      PATH: process.env.PATH,
      SHOAL_LISTEN: `127.0.0.1:${port}`,
      SHOAL_ADMIN_LISTEN: `127.0.0.1:${admin}`,
      SHOAL_DATA_DIR: join(dir, 'data'),
      SHOAL_LOG_LEVEL: 'warn',
      SHOAL_DEFAULT_UPSTREAM: origin.url,
    })
    try {
      const deadline = Date.now() + 10_000
      while ((await get(`http://127.0.0.1:${port}/v2/`))?.status !== 200) {
        assert.ok(Date.now() < deadline, `daemon not up:\n${daemon.output()}`)
        await sleep(50)
      }
      // The image's default listen address (all interfaces) is checked on loopback.
      assert.equal(check({ SHOAL_LISTEN: `0.0.0.0:${port}` }), 0)
      assert.equal(check({ SHOAL_LISTEN: `127.0.0.1:${port}` }), 0)
      // With an admin listener, /healthz there (even when the mirror's address is wrong).
      assert.equal(check({ SHOAL_LISTEN: `127.0.0.1:${admin + 1}`, SHOAL_ADMIN_LISTEN: `0.0.0.0:${admin}` }), 0)
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.output())
      await origin.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('puts no secret in the image or its build context', () => {
    const secretish = /(pass(word)?|secret|token|credential|auth|(^|_)key$|apikey)/i
    for (const i of ins) {
      if (i.op === 'ARG' || i.op === 'ENV') {
        const names = i.args.match(/(^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)/g) ?? []
        for (const n of names) assert.doesNotMatch(n.trim(), secretish, `line ${i.line}: ${i.op} ${n.trim()}`)
      }
      if (i.op === 'RUN') assert.doesNotMatch(i.args, /_authToken|--password|npm_token|https?:\/\/[^/\s]+:[^@\s]+@/i)
      if (i.op === 'ADD') assert.fail(`line ${i.line}: ADD (use COPY; ADD fetches URLs and unpacks archives)`)
      if (i.op === 'COPY') {
        for (const s of copyArgs(i).sources) {
          assert.doesNotMatch(s, /(^|\/)(\.npmrc|\.env|\.docker|\.git|id_[a-z0-9]+|[^/]*\.key|[^/]*\.pem)$/, s)
        }
      }
    }
    // The build context: an allow-list. Everything the build stage copies is in it; keys, git,
    // local installs and developer config are not.
    for (const i of all[0]!.body.filter((x) => x.op === 'COPY')) {
      const c = copyArgs(i)
      if (c.flags.from !== undefined) continue
      for (const s of c.sources)
        assert.equal(dockerignored(ignorePatterns, s), false, `${s} is excluded by .dockerignore`)
    }
    for (const p of [
      '.git/config',
      'node_modules/yaml/package.json',
      'dist/src/cli/main.js',
      '.npmrc',
      '.env',
      'swarm.key',
      'deploy/kubernetes/overlays/example/swarm.key',
      'deploy/examples/config.yaml',
      '.shoal/identity',
      'test/helpers/proc.ts',
    ]) {
      assert.equal(dockerignored(ignorePatterns, p), true, `${p} would enter the build context`)
    }
    assert.equal(dockerignored(ignorePatterns, 'src/cli/main.ts'), false)
  })

  test('the build stage compiles exactly what it copies', () => {
    // Only the manifest, the lock file, tsconfig.json and src/ enter the build: tsc compiles src/.
    const copied = all[0]!.body
      .filter((i) => i.op === 'COPY')
      .flatMap((i) => copyArgs(i).sources)
      .sort()
    assert.deepEqual(copied, ['package-lock.json', 'package.json', 'src', 'tsconfig.json'])
    assert.ok(
      all[0]!.body.some((i) => i.op === 'RUN' && /npm ci\b/.test(i.args)),
      'npm ci: the lock file decides',
    )
  })
})
