/**
 * Every default and limit of Shoal lives here; docs/LIMITS.md and the README quote these values.
 */

export const DEFAULT_LISTEN = '127.0.0.1:5000'
export const DEFAULT_DATA_DIR = './.shoal'
export const DEFAULT_UPSTREAM = 'https://registry-1.docker.io'
export const DEFAULT_LOG_LEVEL = 'info'

/** How long a tag → digest answer is trusted before it is revalidated with the origin. */
export const DEFAULT_TAG_TTL_MS = 30_000

/** How long an authorization decision (client credentials accepted for a repository) is trusted. */
export const AUTH_DECISION_TTL_MS = 60_000

/** Largest manifest accepted from an origin. distribution itself refuses manifests over 4 MiB. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

/** Largest request header block the proxy accepts (node's default is 16 KiB). */
export const MAX_HEADER_BYTES = 16 * 1024

/** OCI repository names: distribution caps them at 255 characters. */
export const MAX_NAME_LENGTH = 255

/** Connect/headers timeout for origin requests. */
export const ORIGIN_HEADERS_TIMEOUT_MS = 30_000

/** A body that sends nothing for this long is abandoned (and later resumed by Range). */
export const ORIGIN_BODY_TIMEOUT_MS = 60_000

/** Attempts for idempotent origin requests on connection errors, 5xx and 429. */
export const ORIGIN_MAX_ATTEMPTS = 4
export const ORIGIN_BACKOFF_BASE_MS = 200
export const ORIGIN_BACKOFF_MAX_MS = 5_000

/**
 * After an origin request failed every attempt without an answer (refused, reset, timed out), the
 * origin counts as down this long: each request to it makes one attempt, no retries, so blobs
 * peers hold and cached manifests are served without waiting out the backoff each time. Any
 * answer ends it.
 */
export const ORIGIN_DOWN_MS = 30_000

/** A Retry-After longer than this is not waited for: the error goes to the client instead. */
export const ORIGIN_MAX_RETRY_AFTER_MS = 10_000

/** Connections kept per origin. */
export const ORIGIN_CONNECTIONS = 16

/**
 * Piece size rule: every node must cut a blob at the same boundaries, so this depends only on
 * the blob size, and it is part of the piece protocol (`/shoal/pieces/2.0.0`; 1.0.0 cut every
 * blob up to 4 GiB in 4 MiB pieces). At most 1024 pieces a blob up to 16 GiB: 1 MiB pieces up to
 * 1 GiB, 4 MiB up to 4 GiB, 16 MiB beyond. Small pieces cross a share of a slow link in a
 * second, so a new piece is relayed on sooner (docs/BENCHMARKS.md, twenty-fourth pass).
 */
export const PIECE_SIZES = [
  { upTo: 1024 ** 3, size: 1024 * 1024 },
  { upTo: 4 * 1024 ** 3, size: 4 * 1024 * 1024 },
  { upTo: Number.POSITIVE_INFINITY, size: 16 * 1024 * 1024 },
] as const
/** Every piece size of the rule above, ascending (the buffer pools' size classes). */
export const PIECE_SIZE_CLASSES: readonly number[] = PIECE_SIZES.map((r) => r.size)
/** The smallest and largest piece size of the rule above. */
export const PIECE_SIZE_MIN = PIECE_SIZES[0].size
export const PIECE_SIZE_MAX = PIECE_SIZES[2].size

/** The partial file is fsynced and its progress recorded at least this often while downloading. */
export const CHECKPOINT_BYTES = 16 * 1024 * 1024

/**
 * An image's config at most this large is fetched into the cache as soon as its manifest is
 * served: skopeo asks for it after the layers, and a herd finishing together would
 * all find it held by nobody and wait for it at the end of the pull.
 */
export const CONFIG_PREFETCH_MAX_BYTES = 1024 * 1024
/** Config prefetches running at once; more are skipped (the client asks for the config anyway). */
export const CONFIG_PREFETCHES_MAX = 16
/** A prefetch that has not finished by then is given up. */
export const CONFIG_PREFETCH_TIMEOUT_MS = 120_000

/** Size of each read when a blob is read through with nobody to send it to (prefetch, preheat). */
export const READ_CHUNK_BYTES = 256 * 1024

/** Buffers kept for use again (received and served pieces, responses) are dropped after this idle. */
export const BUFFER_POOL_IDLE_MS = 30_000

/**
 * Buffers grown by this much since their last low start a young-generation collection
 * (src/util/buffer-collector.ts), checked this often.
 */
export const BUFFER_GC_STEP_BYTES = 16 * 1024 * 1024
export const BUFFER_GC_INTERVAL_MS = 250

/** A blob bigger than this is refused (defends against absurd Content-Length values). */
export const MAX_BLOB_BYTES = 1024 ** 4

/** Time a new transfer waits for the origin to answer with headers before failing the clients. */
export const SHUTDOWN_GRACE_MS = 10_000

/** libp2p connections kept at most (each is one TCP connection with Noise and yamux). */
export const DEFAULT_MAX_CONNECTIONS = 200

/** How often unreachable bootstrap peers are dialled again and DNS names re-resolved. */
export const BOOTSTRAP_INTERVAL_MS = 30_000

/** How often the cache is checked against its quota (also after every stored blob). */
export const GC_INTERVAL_MS = 60_000
