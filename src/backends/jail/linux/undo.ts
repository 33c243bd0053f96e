// A small undo stack for multi-step creation: each step registers how to take itself back *before* it
// runs (a step can half-succeed, e.g. an `ip -batch` that stopped at line 3), so every undo must
// tolerate "not there". On failure the undos run in reverse order and are never interrupted by an
// undo that throws: what could not be undone is collected and reported.
export interface UndoFailure {
  step: string;
  error: unknown;
}

export class UndoStack {
  private readonly steps: { step: string; undo: () => Promise<void> | void }[] = [];

  push(step: string, undo: () => Promise<void> | void): void {
    this.steps.push({ step, undo });
  }

  /** Forget everything (creation succeeded; the resources now belong to the sandbox). */
  commit(): void {
    this.steps.length = 0;
  }

  async rollback(): Promise<UndoFailure[]> {
    const failures: UndoFailure[] = [];
    while (this.steps.length > 0) {
      const { step, undo } = this.steps.pop()!;
      try {
        await undo();
      } catch (error) {
        failures.push({ step, error });
      }
    }
    return failures;
  }
}
