"""Generate a mid-size, stdlib-only Go module for the benchmark.

The module stands in for a typical service repository: :data:`PACKAGES` packages in layers (each
imports one or two packages of the layer below, so the build graph has depth and parallelism),
every package with generic code, plain code and a test file, plus two ``main`` packages so the
build also links. It builds with ``GOPROXY=off``: nothing outside the standard library.

The text is a pure function of the package count, so two runs of the benchmark build the very
same module and their cache keys agree.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGES = 30
"""Library packages in the module (``pkg/p00`` ... ``pkg/p29``)."""

MODULE = "example.com/benchmod"

# Standard packages each library package uses, by index, so compile work varies across the
# module the way it does in real code (encoding/json and text/template are heavy, strings light).
_EXTRA_IMPORTS = (
    ("encoding/json",),
    ("strconv", "unicode"),
    ("bytes", "encoding/binary"),
    ("sync", "context", "time"),
    ("text/template",),
    ("math/big",),
)


def _deps(i: int) -> list[int]:
    """The packages ``p<i>`` imports: two from earlier layers (a DAG with depth ~5)."""
    if i < 3:
        return []
    first = i - 3
    second = i // 2 - 1
    return sorted({first, second} - {i})


def _lib(i: int) -> str:
    deps = _deps(i)
    extra = _EXTRA_IMPORTS[i % len(_EXTRA_IMPORTS)]
    imports = ["cmp", "errors", "fmt", "slices", "sort", "strings", *extra]
    imports += [f"{MODULE}/pkg/p{d:02d}" for d in deps]
    lines = [f"// Package p{i:02d} is generated benchmark code; it only has to compile and test.",
             f"package p{i:02d}", "", "import ("]
    lines += [f'\t"{imp}"' for imp in sorted(imports)]
    lines += [")", ""]
    lines += [f"""
// ErrEmpty is returned by Reduce on an empty slice.
var ErrEmpty = errors.New("p{i:02d}: empty")

// Number is what the numeric helpers accept.
type Number interface {{
\t~int | ~int32 | ~int64 | ~uint32 | ~float64
}}

// Set is a generic set.
type Set[T comparable] struct {{ m map[T]struct{{}} }}

// NewSet returns a set holding items.
func NewSet[T comparable](items ...T) *Set[T] {{
\ts := &Set[T]{{m: make(map[T]struct{{}}, len(items))}}
\tfor _, it := range items {{
\t\ts.m[it] = struct{{}}{{}}
\t}}
\treturn s
}}

// Has reports whether v is in the set.
func (s *Set[T]) Has(v T) bool {{ _, ok := s.m[v]; return ok }}

// Len is the number of items.
func (s *Set[T]) Len() int {{ return len(s.m) }}

// Map applies f to every item.
func Map[T, U any](xs []T, f func(T) U) []U {{
\tout := make([]U, 0, len(xs))
\tfor _, x := range xs {{
\t\tout = append(out, f(x))
\t}}
\treturn out
}}

// Filter keeps the items for which keep is true.
func Filter[T any](xs []T, keep func(T) bool) []T {{
\tvar out []T
\tfor _, x := range xs {{
\t\tif keep(x) {{
\t\t\tout = append(out, x)
\t\t}}
\t}}
\treturn out
}}

// Reduce folds xs with f.
func Reduce[T any](xs []T, f func(T, T) T) (T, error) {{
\tvar zero T
\tif len(xs) == 0 {{
\t\treturn zero, ErrEmpty
\t}}
\tacc := xs[0]
\tfor _, x := range xs[1:] {{
\t\tacc = f(acc, x)
\t}}
\treturn acc, nil
}}

// Sum adds numbers.
func Sum[N Number](xs []N) N {{
\tvar s N
\tfor _, x := range xs {{
\t\ts += x
\t}}
\treturn s
}}

// Tree is a generic binary search tree.
type Tree[K cmp.Ordered, V any] struct {{
\troot *node[K, V]
\tsize int
}}

type node[K cmp.Ordered, V any] struct {{
\tkey         K
\tval         V
\tleft, right *node[K, V]
}}

// Put stores v under k.
func (t *Tree[K, V]) Put(k K, v V) {{
\tp := &t.root
\tfor *p != nil {{
\t\tswitch c := cmp.Compare(k, (*p).key); {{
\t\tcase c < 0:
\t\t\tp = &(*p).left
\t\tcase c > 0:
\t\t\tp = &(*p).right
\t\tdefault:
\t\t\t(*p).val = v
\t\t\treturn
\t\t}}
\t}}
\t*p = &node[K, V]{{key: k, val: v}}
\tt.size++
}}

// Get returns the value under k.
func (t *Tree[K, V]) Get(k K) (V, bool) {{
\tn := t.root
\tfor n != nil {{
\t\tswitch c := cmp.Compare(k, n.key); {{
\t\tcase c < 0:
\t\t\tn = n.left
\t\tcase c > 0:
\t\t\tn = n.right
\t\tdefault:
\t\t\treturn n.val, true
\t\t}}
\t}}
\tvar zero V
\treturn zero, false
}}

// Keys returns the keys in order.
func (t *Tree[K, V]) Keys() []K {{
\tout := make([]K, 0, t.size)
\tvar walk func(*node[K, V])
\twalk = func(n *node[K, V]) {{
\t\tif n == nil {{
\t\t\treturn
\t\t}}
\t\twalk(n.left)
\t\tout = append(out, n.key)
\t\twalk(n.right)
\t}}
\twalk(t.root)
\treturn out
}}

// Record is a plain struct with methods.
type Record struct {{
\tName  string
\tScore int
\tTags  []string
}}

// String formats the record.
func (r Record) String() string {{
\treturn fmt.Sprintf("%s(%d)[%s]", r.Name, r.Score, strings.Join(r.Tags, ","))
}}

// Rank sorts records by score, then name.
func Rank(rs []Record) []Record {{
\tout := slices.Clone(rs)
\tsort.SliceStable(out, func(a, b int) bool {{
\t\tif out[a].Score != out[b].Score {{
\t\t\treturn out[a].Score > out[b].Score
\t\t}}
\t\treturn out[a].Name < out[b].Name
\t}})
\treturn out
}}
"""]
    # Plain functions of varying shape, so packages differ in size and code.
    for f in range(8 + i % 7):
        lines.append(f"""
// Step{f} mixes its input; generated filler with branches and loops.
func Step{f}(x int) int {{
\tfor k := 0; k < {f + 3}; k++ {{
\t\tif x%{f + 2} == 0 {{
\t\t\tx = x/{f + 2} + {i} + k
\t\t}} else {{
\t\t\tx = x*{2 * f + 3} + k + 1
\t\t}}
\t}}
\treturn x
}}
""")
    lines.append(_extra_code(i, extra))
    calls = " + ".join(f"p{d:02d}.Mix(x+{n})" for n, d in enumerate(deps)) or "0"
    lines.append(f"""
// Mix combines this package's steps with those of the packages it imports.
func Mix(x int) int {{
\treturn Step0(x) + Step1(x) + {calls}
}}
""")
    return "\n".join(lines)


def _extra_code(i: int, extra: tuple[str, ...]) -> str:
    """Code that uses the package's extra imports."""
    name = extra[0]
    if name == "encoding/json":
        return """
// Encode renders records as JSON.
func Encode(rs []Record) (string, error) {
\tb, err := json.Marshal(rs)
\treturn string(b), err
}
"""
    if name == "strconv":
        return """
// Words parses integers out of text.
func Words(s string) []int {
\tf := strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsDigit(r) })
\treturn Map(f, func(w string) int { n, _ := strconv.Atoi(w); return n })
}
"""
    if name == "bytes":
        return """
// Pack writes numbers big-endian.
func Pack(xs []uint32) []byte {
\tvar buf bytes.Buffer
\tfor _, x := range xs {
\t\t_ = binary.Write(&buf, binary.BigEndian, x)
\t}
\treturn buf.Bytes()
}
"""
    if name == "sync":
        return """
// Parallel runs f over xs with one goroutine each, honouring ctx.
func Parallel(ctx context.Context, xs []int, f func(int) int) []int {
\tout := make([]int, len(xs))
\tvar wg sync.WaitGroup
\tfor k, x := range xs {
\t\twg.Add(1)
\t\tgo func() {
\t\t\tdefer wg.Done()
\t\t\tselect {
\t\t\tcase <-ctx.Done():
\t\t\tcase <-time.After(0):
\t\t\t\tout[k] = f(x)
\t\t\t}
\t\t}()
\t}
\twg.Wait()
\treturn out
}
"""
    if name == "text/template":
        return """
var tmpl = template.Must(template.New("r").Parse("{{.Name}}={{.Score}}"))

// Render formats a record through a template.
func Render(r Record) string {
\tvar sb strings.Builder
\t_ = tmpl.Execute(&sb, r)
\treturn sb.String()
}
"""
    return """
// Factorial computes n! exactly.
func Factorial(n int64) *big.Int {
\treturn new(big.Int).MulRange(1, n)
}
"""


def _test(i: int) -> str:
    return f"""package p{i:02d}

import "testing"

func TestSet(t *testing.T) {{
\ts := NewSet(1, 2, 3, 3)
\tif s.Len() != 3 || !s.Has(2) || s.Has(7) {{
\t\tt.Fatalf("bad set: %v", s.m)
\t}}
}}

func TestReduce(t *testing.T) {{
\tcases := []struct {{
\t\tin   []int
\t\twant int
\t}}{{{{[]int{{1}}, 1}}, {{[]int{{1, 2, 3}}, 6}}, {{[]int{{{i}, {i}}}, {2 * i}}}}}
\tfor _, c := range cases {{
\t\tgot, err := Reduce(c.in, func(a, b int) int {{ return a + b }})
\t\tif err != nil || got != c.want {{
\t\t\tt.Errorf("Reduce(%v) = %v, %v; want %v", c.in, got, err, c.want)
\t\t}}
\t}}
\tif _, err := Reduce([]string{{}}, func(a, b string) string {{ return a + b }}); err == nil {{
\t\tt.Error("Reduce of nothing did not fail")
\t}}
}}

func TestTree(t *testing.T) {{
\tvar tr Tree[string, int]
\tfor k, w := range []string{{"m", "c", "x", "a", "c"}} {{
\t\ttr.Put(w, k)
\t}}
\tif v, ok := tr.Get("c"); !ok || v != 4 {{
\t\tt.Fatalf("Get(c) = %v, %v", v, ok)
\t}}
\tif got := len(tr.Keys()); got != 4 {{
\t\tt.Fatalf("%d keys", got)
\t}}
}}

func TestRankAndMix(t *testing.T) {{
\trs := Rank([]Record{{{{"b", 1, nil}}, {{"a", 1, nil}}, {{"c", 5, []string{{"x"}}}}}})
\tif rs[0].Name != "c" || rs[1].Name != "a" {{
\t\tt.Fatalf("bad rank: %v", rs)
\t}}
\tif Mix({i}) == Mix({i}) + 1 {{
\t\tt.Fatal("unreachable")
\t}}
\tif s := Sum(Map([]int{{1, 2}}, func(x int) float64 {{ return float64(x) / 2 }})); s != 1.5 {{
\t\tt.Fatalf("Sum = %v", s)
\t}}
}}
"""


def _main(name: str, deps: list[int]) -> str:
    imports = "\n".join(f'\t"{MODULE}/pkg/p{d:02d}"' for d in deps)
    calls = "\n".join(f"\tfmt.Println(p{d:02d}.Mix(len(os.Args)))" for d in deps)
    return f"""// Command {name} links part of the module, so the build has link steps.
package main

import (
\t"fmt"
\t"os"

{imports}
)

func main() {{
{calls}
}}
"""


def write_module(root: str | os.PathLike[str], packages: int = PACKAGES) -> Path:
    """Write the module under ``root`` (created if needed) and return its directory."""
    base = Path(root)
    (base / "go.mod").parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {"go.mod": f"module {MODULE}\n\ngo 1.22\n"}
    for i in range(packages):
        files[f"pkg/p{i:02d}/p{i:02d}.go"] = _lib(i)
        files[f"pkg/p{i:02d}/p{i:02d}_test.go"] = _test(i)
    top = list(range(packages - 4, packages))
    files["cmd/tool/main.go"] = _main("tool", top)
    files["cmd/small/main.go"] = _main("small", [0, 1])
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return base
