import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Which optional oracles (Python with torch and transformers, Chromium) this run has, printed first.
    globalSetup: ['test/oracles-report.ts'],
  },
});
