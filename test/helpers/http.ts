/** One bounded HTTP exchange with a loopback server (a test's direct look at Shoal or the origin). */

export interface HttpReply {
  status: number
  headers: Headers
  body: Buffer
}

export interface HttpOptions {
  method?: 'GET' | 'HEAD'
  headers?: Record<string, string>
  timeoutMs?: number
}

export async function httpGet(url: string, opts: HttpOptions = {}): Promise<HttpReply> {
  const u = new URL(url)
  if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') throw new Error(`not a loopback URL: ${url}`)
  const res = await fetch(url, {
    method: opts.method ?? 'GET',
    headers: opts.headers ?? {},
    redirect: 'manual',
    signal: AbortSignal.timeout(opts.timeoutMs ?? 20_000),
  })
  const body = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: res.headers, body }
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}
