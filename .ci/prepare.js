// `npm run prepare` (kept in .ci/ since the top level holds only the project's fixed set of files):
// builds dist/ unless it is newer than every input.
//
// `npx sluice ...` inside this repository installs the package into npx's
// cache as a link to the working tree and runs its `prepare` on every call
// (npm's exec does this for a local package whose bin matches the command),
// so an unconditional `tsc` made each `npx sluice` take ~10 s. A fresh clone,
// or any source, config or dependency change newer than the build, still
// builds; `npm run build` always does.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const built = join(root, 'dist/cli/main.js')
const inputs = ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']

function newest(path) {
  if (!existsSync(path)) return 0
  const s = statSync(path)
  if (!s.isDirectory()) return s.mtimeMs
  return readdirSync(path).reduce((m, name) => Math.max(m, newest(join(path, name))), s.mtimeMs)
}

const fresh = existsSync(built) && inputs.every((p) => newest(join(root, p)) < statSync(built).mtimeMs)
if (!fresh) {
  const npm = process.env.npm_execpath
  const run = npm ? spawnSync(process.execPath, [npm, 'run', 'build'], { cwd: root, stdio: 'inherit' })
    : spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
  process.exitCode = run.status ?? 1
}
