/**
 * What console.log and util.inspect show of bnpool's objects: a view of their state that the
 * default view leaves out (accessors, private fields, values behind methods).
 */
import { inspect, type InspectOptionsStylized } from 'node:util';

/**
 * Shows instances of the class whose prototype is `prototype` as `Name { ...view }`, and as
 * `[Name]` past the inspection depth, as Node shows its own objects. Defined on the prototype, so
 * the declarations carry no Node type.
 */
export function showAs<T>(prototype: T, name: string, view: (self: T) => object): void {
  Object.defineProperty(prototype, inspect.custom, {
    value(this: T, depth: number, options: InspectOptionsStylized, show: typeof inspect): string {
      if (depth < 0) return options.stylize(`[${name}]`, 'special');
      return `${name} ${show(view(this), { ...options, depth: options.depth == null ? options.depth : options.depth - 1 })}`;
    },
  });
}
