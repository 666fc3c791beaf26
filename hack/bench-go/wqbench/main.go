// Command wqbench measures client-go's rate-limited work queue the way bench/workqueue.py measures
// ours, so that the two can be run side by side: the same item counts, the same key shape
// ("namespace/name-N" strings), the same phases. It prints one JSON object:
// {"sequential": ops_per_s, "concurrent": ops_per_s, "items": N, "workers": W}.
//
//   - sequential: add N distinct keys, then get and done each of them, in one goroutine.
//   - concurrent: one producer adds N keys (each key added twice, the second add deduplicated or
//     re-queued) while W workers get and done until the queue has been drained and shut down.
//
// An "op" is one add/get/done cycle of one item. Run it with GOMAXPROCS=1 to compare with one
// Python thread.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("bench/object-%d", i)
	}
	return ks
}

func newQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: ""},
	)
}

func sequential(ks []string) float64 {
	q := newQueue()
	defer q.ShutDown()
	start := time.Now()
	for _, k := range ks {
		q.Add(k)
	}
	for range ks {
		k, _ := q.Get()
		q.Forget(k)
		q.Done(k)
	}
	return float64(len(ks)) / time.Since(start).Seconds()
}

func concurrent(ks []string, workers int) float64 {
	q := newQueue()
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				k, shutdown := q.Get()
				if shutdown {
					break
				}
				q.Forget(k)
				q.Done(k)
				n++
			}
			mu.Lock()
			done += n
			mu.Unlock()
		}()
	}
	for _, k := range ks {
		q.Add(k)
		q.Add(k)
	}
	q.ShutDownWithDrain()
	wg.Wait()
	return float64(done) / time.Since(start).Seconds()
}

func main() {
	items := flag.Int("items", 200000, "distinct keys per phase")
	workers := flag.Int("workers", 4, "workers in the concurrent phase")
	flag.Parse()
	ks := keys(*items)
	out := map[string]any{
		"sequential": sequential(ks),
		"concurrent": concurrent(ks, *workers),
		"items":      *items,
		"workers":    *workers,
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
