/**
 * Server-stream plumbing without async generators. A message of a WatchSession stream passes
 * the service, the interceptors and the transport; written as async generators, each of those
 * layers costs a queue entry, an await for its `yield` and a promise per message, and what it
 * holds while the stream waits for its next event (often seconds) lives long enough to be
 * promoted, then collected by a full GC. These iterator objects forward each `next()` to the
 * source with at most one promise, and pass `return()` and `throw()` on at once, as a
 * generator's `for await` / `yield*` would.
 */

/** What `relay` does with the source's results. */
export interface RelayHooks<T> {
  /** Sees each message before it goes on. */
  value?(value: T): void;
  /** Sees an error from the source; returns or throws the error to pass on instead. */
  error?(err: unknown): unknown;
}

/** `source` with `hooks` applied to its messages and its error. */
export function relay<T>(source: AsyncIterable<T>, hooks: RelayHooks<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = source[Symbol.asyncIterator]();
      const onValue = hooks.value
        ? (r: IteratorResult<T>) => {
            if (!r.done) hooks.value!(r.value);
            return r;
          }
        : undefined;
      const onError = hooks.error
        ? async (err: unknown): Promise<never> => {
            throw await hooks.error!(err);
          }
        : undefined;
      const settle = (p: Promise<IteratorResult<T>>) => (onValue || onError ? p.then(onValue, onError) : p);
      return {
        next: () => settle(it.next()),
        return: (value?: unknown) => (it.return ? settle(it.return(value)) : Promise.resolve({ done: true, value: value as T })),
        throw: (err?: unknown) => (it.throw ? settle(it.throw(err)) : Promise.reject(err)),
      };
    },
  };
}

/**
 * A stream whose first `next()` runs `setup` (admission, checks, the opening's audit record)
 * and then reads the stream it resolves to, or ends when it resolves undefined. After that,
 * every call goes straight to that stream's iterator. An error from `setup` is the stream's
 * first result, as it would be from an async generator's body.
 */
export function afterSetup<T>(setup: () => Promise<AsyncIterable<T> | undefined>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      let inner: AsyncIterator<T> | undefined;
      let opening: Promise<AsyncIterator<T> | undefined> | undefined;
      let finished = false;
      const done = (value?: unknown): IteratorResult<T> => ({ done: true, value: value as T });
      const open = () =>
        (opening ??= setup().then(
          (s) => {
            const it = s?.[Symbol.asyncIterator]();
            if (!finished) inner = it;
            return it;
          },
          (err: unknown) => {
            finished = true;
            throw err;
          },
        ));
      return {
        next: () => {
          if (inner) return inner.next();
          if (finished) return Promise.resolve(done());
          return open().then((it) => (it && inner ? it.next() : done()));
        },
        // Before setup started there is nothing to end; during it, the stream it yields is
        // ended as soon as it exists (a caller that left mid-opening holds nothing).
        return: (value?: unknown) => {
          if (inner) return inner.return ? inner.return(value) : Promise.resolve(done(value));
          finished = true;
          if (opening === undefined) return Promise.resolve(done(value));
          return opening.then(
            async (it) => {
              await it?.return?.(value);
              return done(value);
            },
            () => done(value),
          );
        },
        throw: (err?: unknown) => {
          if (inner?.throw) return inner.throw(err);
          finished = true;
          return Promise.reject(err);
        },
      };
    },
  };
}
