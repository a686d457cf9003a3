export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'

/** Every manifest type Shoal asks the origin for, most specific first. */
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(', ')

export const MANIFEST_TYPES = new Set([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

/**
 * The media type of a manifest body when the origin gave none: the `mediaType` field, or the
 * shape (an index has `manifests`).
 */
export function sniffManifestType(body: Uint8Array): string | undefined {
  try {
    const doc = JSON.parse(Buffer.from(body).toString('utf8')) as {
      mediaType?: unknown
      manifests?: unknown
      schemaVersion?: unknown
    }
    if (typeof doc.mediaType === 'string') return doc.mediaType
    if (Array.isArray(doc.manifests)) return OCI_INDEX
    if (doc.schemaVersion === 2) return OCI_MANIFEST
  } catch {
    // not JSON: unknown
  }
  return undefined
}
