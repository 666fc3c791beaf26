"""The framework: controller-runtime's and client-go's semantics, in asyncio. It knows Kubernetes
and nothing of snapshots.

Layers, each importing only those below it:
  builder -> manager -> cache / controller -> handler, predicate -> reconcile -> client
  cache = informer (reflector -> store -> handlers); controller = workqueue + ratelimiter + workers.
Cross-cutting: errors, resource, clock, backoff, metrics, tracing, events, leaderelection.
"""
