// Prints `N passed, N failed, N skipped` as the run's very last line, the plain form that CI reads.
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const testModule of testModules) {
      let failedInModule = 0;
      for (const test of testModule.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed += 1;
        else if (state === 'failed') failedInModule += 1;
        else skipped += 1; // skipped, todo, or never run (pending after an interrupted run)
      }
      // A file that failed outside any test (syntax error, failing beforeAll/afterAll) must not read as
      // "0 failed": count it once.
      const fileErrors = testModule.errors().length > 0 || testModule.state() === 'failed';
      if (failedInModule === 0 && fileErrors) failedInModule = 1;
      failed += failedInModule;
    }
    // Errors outside any test (an unhandled rejection) fail the run too.
    failed += unhandledErrors.length;
    process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
