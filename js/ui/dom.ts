// Tiny DOM helpers. Token text is untrusted: it only ever goes through textContent.

import { kindText } from "./names";

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** One tooltip per widget root; lines are set as text, never HTML. */
export class Tooltip {
  el = h("div", "lew-tooltip");
  constructor(private root: HTMLElement) {
    this.el.hidden = true;
    this.el.setAttribute("role", "tooltip");
    root.appendChild(this.el);
  }
  show(ev: MouseEvent, lines: string[]): void {
    this.el.replaceChildren(...lines.map((l, i) => h("div", i === 0 ? "lew-tt-title" : "", l)));
    this.el.hidden = false;
    const box = this.root.getBoundingClientRect();
    const x = ev.clientX - box.left + 14;
    const y = ev.clientY - box.top + 14;
    const maxX = box.width - this.el.offsetWidth - 4;
    this.el.style.left = `${Math.max(0, Math.min(x, maxX))}px`;
    this.el.style.top = `${y}px`;
  }
  hide(): void {
    this.el.hidden = true;
  }
}

/**
 * The kind of a figure (measured / estimated / modeled), with its scope when known; `tip`: where
 * the number comes from, shown on hover (names.kindTip).
 */
export function badge(kind: string | null | undefined, scope?: string | null, tip?: string[]): HTMLSpanElement {
  const k = kind || "estimated";
  const b = h("span", `lew-badge lew-kind-${k}`, kindText(k, scope));
  if (tip && tip.length) b.title = tip.join("\n");
  return b;
}

const NAV_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"]);

/**
 * Keep the navigation keys for a control: JupyterLab's notebook binds the arrows in command mode
 * (move the cursor, collapse headings), so without this a focused slider never sees them.
 */
export function keepKeys(el: HTMLElement): void {
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  el.addEventListener("keydown", (ev) => {
    if (NAV_KEYS.has(ev.key)) ev.stopPropagation();
  });
}
