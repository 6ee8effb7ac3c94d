"""A small thread-safe LRU cache: the plugin's memory stays bounded however long TensorBoard runs."""

import collections
import threading


class ByteLru:
    """An LRU cache bounded by the bytes of its values (`nbytes(value)`), for tiles and decoded layers whose sizes
    differ by orders of magnitude; a value larger than the bound is returned but not kept."""

    def __init__(self, max_bytes, nbytes):
        self.max_bytes = int(max_bytes)
        self._nbytes = nbytes
        self._items: collections.OrderedDict = collections.OrderedDict()
        self.bytes = 0
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._items)

    def get(self, key, make):
        """The cached value for `key`, else `make()` (called without the lock held; exceptions are not cached)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = make()
        size = int(self._nbytes(value))
        with self._lock:
            if size > self.max_bytes or key in self._items:
                return value
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return value


class Lru(ByteLru):
    """At most `size` entries, whatever their sizes (manifests, step indices)."""

    def __init__(self, size):
        super().__init__(size, _one)


def _one(_value):
    return 1
