// The engine's API token: asked for in a dialog when an action needs it,
// kept in memory, and in the tab's sessionStorage if the user says so.
import { byId } from "./dom";

const TOKEN_KEY = "vmre.apiToken";

export class TokenDialog {
  private memory: string | null = null;
  private readonly btn = byId<HTMLButtonElement>("token-btn");
  private readonly dialog = byId<HTMLDialogElement>("token-dialog");
  private readonly form = byId<HTMLFormElement>("token-form");
  private readonly input = byId<HTMLInputElement>("token-input");
  private readonly remember = byId<HTMLInputElement>("token-remember");
  private readonly text = byId("token-text");
  private readonly cancel = byId("token-cancel");

  constructor() {
    this.btn.addEventListener("click", () => {
      if (this.stored() !== null) this.forget();
      else void this.ask("Stop and restart need the engine's API token. vmre run prints the path of the file that holds it.");
    });
    this.renderButton();
  }

  // stored returns the token kept for this tab, or null.
  stored(): string | null {
    if (this.memory) return this.memory;
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  forget(): void {
    this.memory = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // storage unavailable: nothing kept
    }
    this.renderButton();
  }

  // ask shows the dialog with reason and resolves to the token entered, or
  // null if the user cancelled.
  ask(reason: string): Promise<string | null> {
    this.text.textContent = reason;
    this.input.value = "";
    this.dialog.showModal();
    this.input.focus();
    return new Promise((resolve) => {
      const done = (value: string | null) => {
        this.form.removeEventListener("submit", onSubmit);
        this.cancel.removeEventListener("click", onCancel);
        this.dialog.removeEventListener("cancel", onCancel);
        this.dialog.close();
        resolve(value);
      };
      const onSubmit = (ev: Event) => {
        ev.preventDefault();
        const v = this.input.value.trim();
        if (!v) return;
        this.keep(v);
        done(v);
      };
      const onCancel = (ev: Event) => {
        ev.preventDefault();
        done(null);
      };
      this.form.addEventListener("submit", onSubmit);
      this.cancel.addEventListener("click", onCancel);
      this.dialog.addEventListener("cancel", onCancel);
    });
  }

  private keep(token: string): void {
    this.memory = token;
    if (this.remember.checked) {
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch {
        // storage unavailable: keep it in memory only
      }
    }
    this.renderButton();
  }

  private renderButton(): void {
    const has = this.stored() !== null;
    this.btn.textContent = has ? "Forget token" : "Set token";
    this.btn.dataset.token = has ? "set" : "unset";
  }
}
