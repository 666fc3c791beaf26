// Command crlatency is the controller-runtime baseline for bench/latency.py: a minimal controller
// with a no-op reconcile that watches BenchObject (bench.dynamo.test/v1) as unstructured objects.
//
// At the start of every reconcile it reads the object from the informer cache and records
// (spec.stamp, now) where spec.stamp is the wall-clock time, in seconds, that the writer put into
// the object when it updated it. It prints "READY" once it has reconciled --expect distinct objects
// (the initial list is drained) and, on SIGTERM or SIGINT, writes every record to --out as JSON:
// {"records": [[stamp, start], ...]}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

var gvk = schema.GroupVersionKind{Group: "bench.dynamo.test", Version: "v1", Kind: "BenchObject"}

type recorder struct {
	client  client.Reader
	expect  int
	mu      sync.Mutex
	records [][2]float64
	seen    map[string]struct{}
}

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func (r *recorder) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := nowSeconds()
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	stamp, found, err := unstructured.NestedFloat64(obj.Object, "spec", "stamp")
	if err != nil || !found {
		// Integers decode as int64 in unstructured objects.
		if i, ok, _ := unstructured.NestedInt64(obj.Object, "spec", "stamp"); ok {
			stamp, found = float64(i), true
		}
	}
	if found {
		r.mu.Lock()
		r.records = append(r.records, [2]float64{stamp, start})
		if r.seen != nil {
			r.seen[req.String()] = struct{}{}
			if len(r.seen) >= r.expect {
				r.seen = nil
				fmt.Println("READY")
			}
		}
		r.mu.Unlock()
	}
	return reconcile.Result{}, nil
}

func main() {
	// --kubeconfig is controller-runtime's own flag (read by ctrl.GetConfig).
	namespace := flag.String("namespace", "bench", "namespace of the BenchObjects")
	workers := flag.Int("workers", 4, "MaxConcurrentReconciles")
	out := flag.String("out", "", "where to write the records on shutdown")
	expect := flag.Int("expect", 1, "print READY after reconciling this many distinct objects")
	flag.Parse()

	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Same client-side limits for every contender: none that the benchmark would hit.
	cfg.QPS, cfg.Burst = 10000, 10000
	mgr, err := manager.New(cfg, manager.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rec := &recorder{client: mgr.GetCache(), expect: *expect, seen: map[string]struct{}{}}
	watched := &unstructured.Unstructured{}
	watched.SetGroupVersionKind(gvk)
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("benchobject").
		For(watched).
		WithOptions(controller.Options{MaxConcurrentReconciles: *workers}).
		Complete(rec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	data, _ := json.Marshal(map[string]any{"records": rec.records})
	if *out != "" {
		if err := os.WriteFile(*out, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
