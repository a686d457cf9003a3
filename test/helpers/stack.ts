/**
 * The usual end-to-end arrangement: a real origin (docker-registry), Shoal in front of it, and a
 * registry name for the clients (`alias`) that is a dead loopback port. Shoal maps the alias to
 * the origin (`registries: [{host: alias, url: origin}]`, used for containerd's `?ns=alias`) and
 * uses the origin as its default upstream (skopeo and podman send no `?ns=`).
 */
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { MirrorRoute } from './clients.js'
import { freePort, httpStatus, removeTempDir, shortTempDir } from './proc.js'
import { type Credentials, type Registry, type RegistryOptions, startRegistry } from './registry.js'
import { type Shoal, type ShoalOptions, type ShoalRegistryEntry, startShoal } from './shoal.js'

/** A loopback `host:port` nothing listens on (checked). */
export async function deadAlias(): Promise<string> {
  for (let i = 0; i < 5; i++) {
    const port = await freePort()
    const host = `127.0.0.1:${port}`
    if ((await httpStatus(`http://${host}/v2/`, 1_000)) === undefined) return host
  }
  throw new Error('no dead loopback port found')
}

/** Asserts that nothing answers on the alias: a client cannot have fallen back to it. */
export async function assertDead(alias: string): Promise<void> {
  assert.equal(await httpStatus(`http://${alias}/v2/`, 1_000), undefined, `something answers on the alias ${alias}`)
}

/**
 * Shoal's registry entries: the alias mapped to the origin (containerd's `?ns=alias`). With
 * credentials, also an entry for the origin's own name, which is the default upstream's host
 * (skopeo and podman send no `?ns=`), so that Shoal has them for both.
 */
export function registryEntries(alias: string, origin: Registry, creds?: Credentials): ShoalRegistryEntry[] {
  if (creds === undefined) return [{ host: alias, url: origin.url }]
  const c = { username: creds.username, password: creds.password }
  return [
    { host: alias, url: origin.url, ...c },
    { host: origin.host, url: origin.url, ...c },
  ]
}

export interface StackOptions {
  registry?: RegistryOptions
  /** Give Shoal the registry's credentials (default: those of `registry.auth`, if any). */
  shoalCreds?: Credentials | null
  shoal?: Partial<ShoalOptions>
}

export interface Stack {
  origin: Registry
  shoal: Shoal
  alias: string
  route: MirrorRoute
  /** A short temp dir for the test's own files (image layouts, client outputs). */
  work: string
  /** A fresh subdirectory of `work`. */
  subdir(name: string): Promise<string>
  /** Stops everything by PID and removes the temp dirs; never throws. */
  cleanup(): Promise<void>
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const work = await shortTempDir('sh-e2e-')
  let origin: Registry | undefined
  let shoal: Shoal | undefined
  try {
    origin = await startRegistry(opts.registry)
    const alias = await deadAlias()
    const creds = opts.shoalCreds === null ? undefined : (opts.shoalCreds ?? opts.registry?.auth)
    shoal = await startShoal({
      defaultUpstream: origin.url,
      registries: registryEntries(alias, origin, creds),
      ...opts.shoal,
    })
    const o = origin
    const s = shoal
    let n = 0
    return {
      origin: o,
      shoal: s,
      alias,
      route: { alias, mirror: s.host },
      work,
      async subdir(name: string) {
        n++
        const d = join(work, `${n}-${name}`)
        await mkdir(d, { recursive: true })
        return d
      },
      async cleanup() {
        await Promise.all([s.cleanup().catch(() => {}), o.cleanup().catch(() => {})])
        await removeTempDir(work)
      },
    }
  } catch (err) {
    await Promise.all([shoal?.cleanup().catch(() => {}), origin?.cleanup().catch(() => {})])
    await removeTempDir(work)
    throw err
  }
}
