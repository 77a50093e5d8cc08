// @ts-check
//! Browser tests: Debian's Chromium (never a downloaded browser) with fake camera and microphone,
//! against debug builds of visavis started on their own ports, and a real coturn for interop.
import { defineConfig } from '@playwright/test';

const PORT = Number(process.env.VISAVIS_E2E_PORT ?? 18080);
/** A second visavis that hands out the coturn below instead of its own TURN server. */
export const COTURN_APP_PORT = PORT + 1;
const TURN_PORT = PORT - 4602; // 13478 by default
const COTURN_PORT = TURN_PORT + 1;
const COTURN_SECRET = 'e2e-coturn-secret';
/** Where the first visavis serves its metrics. */
export const METRICS_PORT = PORT + 2;

export default defineConfig({
  testDir: './e2e',
  testIgnore: process.env.VISAVIS_MEASURE ? [] : ['**/measure/**'],
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--use-fake-device-for-media-stream=device-count=3',
        '--use-fake-ui-for-media-stream',
        '--autoplay-policy=no-user-gesture-required',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    },
    permissions: ['camera', 'microphone'],
    locale: 'en-US',
  },
  webServer: [
    {
      // Short ring timeout and redial delay so those tests take seconds, not 30; every browser
      // here comes from 127.0.0.1, so that address may fill a room (--max-seats-per-ip). These
      // servers are never restarted, and runs side by side must not share a state file:
      // --state none (tests that restart a server use startServer, with a data dir of its own).
      command: `cargo build -q --bin visavis --bin visavis-bot && target/debug/visavis --listen 127.0.0.1:${PORT} --ring-timeout 3 --redial-delay 2 --mesh-limit 4 --group-media mesh --max-seats-per-ip 100 --state none --turn-listen 127.0.0.1:${TURN_PORT} --metrics-listen 127.0.0.1:${METRICS_PORT}`,
      url: `http://127.0.0.1:${PORT}/healthz`,
      reuseExistingServer: false,
      timeout: 600_000,
      stdout: 'pipe',
    },
    {
      command: [
        'turnserver -n --listening-ip=127.0.0.1', `--listening-port=${COTURN_PORT}`, '--relay-ip=127.0.0.1',
        '--use-auth-secret', `--static-auth-secret=${COTURN_SECRET}`, '--realm=visavis',
        '--allow-loopback-peers', '--no-tls', '--no-dtls', '--no-cli',
        '--min-port=64000 --max-port=64999', '--log-file=stdout', '--no-stdout-log',
      ].join(' '),
      port: COTURN_PORT,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: `target/debug/visavis --listen 127.0.0.1:${COTURN_APP_PORT} --turn-url turn:127.0.0.1:${COTURN_PORT}?transport=udp --turn-secret ${COTURN_SECRET} --state none --sfu-listen 127.0.0.1:0`,
      url: `http://127.0.0.1:${COTURN_APP_PORT}/healthz`,
      reuseExistingServer: false,
      timeout: 600_000,
    },
  ],
});
