import { type Logger, pino } from 'pino'
import type { LogLevel } from './config/config.js'

export type { Logger }

/** Operators' log: JSON lines on stdout. One per daemon, passed to every component. */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino({ level, base: { name: 'shoal' }, timestamp: pino.stdTimeFunctions.isoTime }, destination)
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
