// Small DOM helpers shared by the page's parts.

// byId returns the element with id, which the page must have.
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
}

export function button(text: string, cls: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

export function span(cls: string, text: string): HTMLSpanElement {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

// ErrorBanner is the page's one error message, also exposed as
// html[data-error] for tests.
export class ErrorBanner {
  private readonly el = byId("error");
  private readonly text = byId("error-text");

  constructor() {
    byId("error-close").addEventListener("click", () => this.clear());
  }

  show(message: string): void {
    this.text.textContent = message;
    this.el.hidden = false;
    document.documentElement.dataset.error = message;
  }

  clear(): void {
    this.el.hidden = true;
    delete document.documentElement.dataset.error;
  }
}
