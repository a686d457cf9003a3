#!/usr/bin/env node
/**
 * The `shoal` command. `restart` runs first and may restart the daemon in place (see there);
 * the program is loaded only after it, so a restart does not parse the whole program twice.
 */
import './restart.js'

await import('./program.js')
