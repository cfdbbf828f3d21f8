// Classes of things made equal, one `union` at a time: the equalities of a query's conditions.

export class UnionFind {
  readonly #parent = new Map<string, string>();

  add(x: string): void {
    if (!this.#parent.has(x)) this.#parent.set(x, x);
  }

  find(x: string): string {
    this.add(x);
    let root = x;
    while (this.#parent.get(root) !== root) root = this.#parent.get(root)!;
    let at = x;
    while (at !== root) {
      const next = this.#parent.get(at)!;
      this.#parent.set(at, root);
      at = next;
    }
    return root;
  }

  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.#parent.set(ra, rb);
  }

  members(x: string): string[] {
    const root = this.find(x);
    return [...this.#parent.keys()].filter((k) => this.find(k) === root);
  }

  groups(): string[][] {
    const byRoot = new Map<string, string[]>();
    for (const k of [...this.#parent.keys()]) {
      const root = this.find(k);
      let list = byRoot.get(root);
      if (list === undefined) byRoot.set(root, (list = []));
      list.push(k);
    }
    return [...byRoot.values()];
  }
}
