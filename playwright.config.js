// @ts-check
//! Browser tests: Debian's Chromium (never a downloaded browser) with fake camera and microphone,
//! against a debug build of visavis started on its own port.
import { defineConfig } from '@playwright/test';

const PORT = Number(process.env.VISAVIS_E2E_PORT ?? 18080);

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
  webServer: {
    // Short ring timeout so the no-answer test takes seconds, not 30.
    command: `cargo build -q --bin visavis && target/debug/visavis --listen 127.0.0.1:${PORT} --ring-timeout 3`,
    url: `http://127.0.0.1:${PORT}/healthz`,
    reuseExistingServer: false,
    timeout: 600_000,
    stdout: 'pipe',
  },
});
