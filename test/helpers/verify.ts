/** Assertions on what a client got and on what Shoal serves, shared by the e2e tests. */
import assert from 'node:assert/strict'
import { type BlobCheck, type Containerd, checkOciLayout, type Podman } from './clients.js'
import { basic, httpGet } from './http.js'
import { type Descriptor, type PlatformImage, sha256 } from './image.js'
import type { Credentials } from './registry.js'
import type { Shoal } from './shoal.js'

/** Every blob hashed to its name; every expected digest is there with its size; none of `absent`. */
export function assertBlobs(
  what: string,
  check: BlobCheck,
  expected: readonly Descriptor[],
  absent: readonly Descriptor[] = [],
): void {
  assert.deepEqual(check.bad, [], `${what}: blobs whose content does not match their digest`)
  for (const d of expected) {
    assert.equal(check.ok.get(d.digest), d.size, `${what}: blob ${d.digest} (${d.mediaType}) missing or wrong size`)
  }
  for (const d of absent) {
    assert.equal(check.ok.has(d.digest), false, `${what}: has ${d.digest} (${d.mediaType}) it should not have`)
  }
}

/** The descriptors a single-platform pull of `im` stores: manifest, config, layers. */
export function imageDescriptors(im: PlatformImage): Descriptor[] {
  return [im.manifest, im.config, ...im.layers]
}

/** What `skopeo copy … oci:OUT` wrote holds exactly the blobs of these platform images. */
export async function assertOciLayout(
  out: string,
  images: readonly PlatformImage[],
  extra: readonly Descriptor[] = [],
  absent: readonly PlatformImage[] = [],
): Promise<BlobCheck> {
  const check = await checkOciLayout(out)
  const expected = [...images.flatMap(imageDescriptors), ...extra]
  const notExpected = absent.flatMap((im) => [im.manifest, im.config, ...im.layers])
  assertBlobs(`oci layout ${out}`, check, expected, notExpected)
  const want = new Set(expected.map((d) => d.digest))
  const unexpected = [...check.ok.keys()].filter((d) => !want.has(d))
  assert.deepEqual(unexpected, [], `oci layout ${out}: blobs that belong to no expected image`)
  return check
}

/** containerd's content store has these blobs (hashed on disk) and `ctr content ls` lists them. */
export async function assertContainerd(
  ctd: Containerd,
  expected: readonly Descriptor[],
  absent: readonly Descriptor[] = [],
): Promise<void> {
  const check = await ctd.contentBlobs()
  assertBlobs('containerd content store', check, expected, absent)
  const listed = new Set(await ctd.contentList())
  for (const d of expected) assert.ok(listed.has(d.digest), `ctr content ls lacks ${d.digest}`)
}

/**
 * podman's view of the pulled image: its ID is the config digest, its digest the manifest's (or the index's),
 * RootFS the diff_ids, and containers-storage recorded every compressed layer digest (which
 * podman verified while pulling) with the uncompressed digest it computed while applying it.
 */
export async function assertPodmanImage(
  pod: Podman,
  ref: string,
  im: PlatformImage,
  index?: Descriptor,
): Promise<void> {
  const info = await pod.inspect(ref)
  assert.equal(`sha256:${info.Id}`, im.config.digest, 'podman image ID is not the config digest')
  // Pulled through an index, podman records the index's digest as the image's and both digests
  // among its RepoDigests.
  assert.equal(info.Digest, index?.digest ?? im.manifest.digest, 'podman image digest')
  for (const d of [im.manifest.digest, ...(index === undefined ? [] : [index.digest])]) {
    assert.ok(
      info.RepoDigests.some((r) => r.endsWith(`@${d}`)),
      `podman RepoDigests ${JSON.stringify(info.RepoDigests)} lack ${d}`,
    )
  }
  assert.equal(info.Architecture, im.platform.architecture)
  assert.deepEqual(
    info.RootFS.Layers,
    im.layers.map((l) => l.diffId),
    'podman RootFS layers are not the diff_ids',
  )
  const layers = await pod.storageLayers()
  for (const l of im.layers) {
    const stored = layers.find((s) => s['compressed-diff-digest'] === l.digest)
    assert.ok(stored !== undefined, `podman storage has no layer pulled as ${l.digest}`)
    assert.equal(stored['diff-digest'], l.diffId, `podman layer ${l.digest} applied to another diff`)
    assert.equal(stored['compressed-size'], l.size, `podman layer ${l.digest} size`)
  }
}

export interface DirectOptions {
  /** `?ns=` (containerd's way of naming the registry). */
  ns?: string
  creds?: Credentials
}

function query(opts: DirectOptions): string {
  return opts.ns === undefined ? '' : `?ns=${encodeURIComponent(opts.ns)}`
}

function authHeaders(opts: DirectOptions): Record<string, string> {
  return opts.creds === undefined ? {} : { authorization: basic(opts.creds.username, opts.creds.password) }
}

/**
 * Asks Shoal directly for each blob: 200, `X-Shoal-Source: cache`, the exact bytes. Shows that the
 * client's pull left the content in Shoal's cache.
 */
export async function assertServedFromCache(
  shoal: Shoal,
  repo: string,
  blobs: readonly Descriptor[],
  opts: DirectOptions = {},
): Promise<void> {
  for (const d of blobs) {
    const r = await httpGet(`${shoal.url}/v2/${repo}/blobs/${d.digest}${query(opts)}`, { headers: authHeaders(opts) })
    assert.equal(r.status, 200, `GET blob ${d.digest} from Shoal: status`)
    assert.equal(r.headers.get('x-shoal-source'), 'cache', `GET blob ${d.digest} from Shoal: X-Shoal-Source`)
    assert.equal(r.body.length, d.size, `GET blob ${d.digest} from Shoal: length`)
    assert.equal(sha256(r.body), d.digest, `GET blob ${d.digest} from Shoal: content`)
  }
}

export interface ManifestReply {
  status: number
  digest: string | null
  contentType: string | null
  source: string | null
  stale: string | null
  wwwAuthenticate: string | null
  body: Buffer
}

/** GET of a manifest from Shoal, with the headers that matter. */
export async function getManifest(
  shoal: Shoal,
  repo: string,
  reference: string,
  opts: DirectOptions & { method?: 'GET' | 'HEAD' } = {},
): Promise<ManifestReply> {
  const r = await httpGet(`${shoal.url}/v2/${repo}/manifests/${reference}${query(opts)}`, {
    method: opts.method ?? 'GET',
    headers: {
      accept: [
        'application/vnd.oci.image.index.v1+json',
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
        'application/vnd.docker.distribution.manifest.v2+json',
      ].join(', '),
      ...authHeaders(opts),
    },
  })
  return {
    status: r.status,
    digest: r.headers.get('docker-content-digest'),
    contentType: r.headers.get('content-type'),
    source: r.headers.get('x-shoal-source'),
    stale: r.headers.get('x-shoal-stale'),
    body: r.body,
    wwwAuthenticate: r.headers.get('www-authenticate'),
  }
}

/**
 * Origin access log: how many bytes of this blob's body the origin sent (GET answered 200 or 206;
 * Shoal fetches in ranges). One full transfer is exactly the blob's size.
 */
export function originBlobBytes(
  lines: ReadonlyArray<{ method: string; path: string; status: number; bytes: number }>,
  digest: string,
): number {
  return lines
    .filter(
      (l) =>
        l.method === 'GET' &&
        (l.status === 200 || l.status === 206) &&
        l.path.split('?')[0]?.endsWith(`/blobs/${digest}`),
    )
    .reduce((sum, l) => sum + l.bytes, 0)
}
