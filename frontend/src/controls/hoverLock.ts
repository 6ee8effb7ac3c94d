// Hover-with-click-to-lock, shared by the views: hovering previews an item, clicking locks it (hover is then
// ignored until unlocked), clicking the locked item again or Esc unlocks. T is whatever identifies an item.

export class HoverLock<T> {
  private hovered: T | null = null;
  private locked: T | null = null;

  constructor(
    private readonly onChange: (current: T | null, locked: boolean) => void,
    private readonly same: (a: T, b: T) => boolean = (a, b) => a === b,
  ) {}

  get current(): T | null {
    return this.locked ?? this.hovered;
  }

  get isLocked(): boolean {
    return this.locked !== null;
  }

  hover(item: T | null): void {
    const before = this.current;
    this.hovered = item;
    if (!this.locked && !this.eq(before, this.current)) this.onChange(this.current, false);
  }

  /** Click: lock `item`, or unlock when it is the locked one. */
  click(item: T): void {
    this.locked = this.locked !== null && this.same(this.locked, item) ? null : item;
    this.onChange(this.current, this.locked !== null);
  }

  /** Esc. Returns whether anything was locked. */
  unlock(): boolean {
    if (this.locked === null) return false;
    this.locked = null;
    this.onChange(this.current, false);
    return true;
  }

  /** Drops both (e.g. the item no longer exists), without a callback. */
  reset(): void {
    this.hovered = this.locked = null;
  }

  private eq(a: T | null, b: T | null): boolean {
    return a === null || b === null ? a === b : this.same(a, b);
  }
}
