package k8s_test

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerStages reads the Dockerfile at the root: stage name -> its lines
// (continuations joined).
func dockerStages(t *testing.T) (map[string][]string, []string) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	stages := map[string][]string{}
	var order []string
	cur := ""
	from := regexp.MustCompile(`(?i)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?`)
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := from.FindStringSubmatch(line); m != nil {
			cur = m[2]
			order = append(order, cur)
		}
		stages[cur] = append(stages[cur], line)
	}
	return stages, order
}

// TestDockerfile: the Dockerfile has a target per program the manifests
// run, each a static binary (CGO_ENABLED=0) on distroless static as
// nonroot, whose entrypoint is the program and which exposes the port the
// manifests give it.
func TestDockerfile(t *testing.T) {
	stages, _ := dockerStages(t)
	build := strings.Join(stages["build"], "\n")
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Error("the build stage must set CGO_ENABLED=0 (static binaries for distroless static)")
	}
	runtime := stages["runtime"]
	if len(runtime) == 0 || !regexp.MustCompile(`^FROM gcr\.io/distroless/static-debian\d+:nonroot AS runtime$`).MatchString(runtime[0]) {
		t.Errorf("the runtime stage must be FROM gcr.io/distroless/static-debian<N>:nonroot, got %q", runtime)
	}
	ports := map[string]string{}
	for _, w := range render(t, "base").Workloads() {
		c := programContainer(w)
		prog, _ := Program(c)
		for _, p := range c.Ports {
			if p.Name == "http" {
				ports[prog] = itoa(p.ContainerPort)
			}
		}
	}
	for _, p := range programs {
		lines := stages[p]
		if len(lines) == 0 {
			t.Errorf("no target %s (FROM runtime AS %s)", p, p)
			continue
		}
		want := []string{
			"FROM runtime AS " + p,
			"COPY --from=build /out/" + p + " /usr/local/bin/" + p,
			`ENTRYPOINT ["/usr/local/bin/` + p + `"]`,
			"EXPOSE " + ports[p],
		}
		for _, w := range want {
			found := false
			for _, l := range lines {
				found = found || l == w
			}
			if !found {
				t.Errorf("target %s: no line %q", p, w)
			}
		}
		if !strings.Contains(build, "./cmd/"+p) {
			t.Errorf("the build stage does not build ./cmd/%s", p)
		}
		if _, ok := ports[p]; !ok {
			t.Errorf("no manifest runs %s", p)
		}
	}
	for prog := range ports {
		if stages[prog] == nil {
			t.Errorf("the manifests run %s%s, which the Dockerfile has no target for", imagePrefix, prog)
		}
	}
}

// TestDockerignore: the build context keeps every source and embedded file
// of the packages the programs are built from.
func TestDockerignore(t *testing.T) {
	f, err := os.Open("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not understood by this test", p)
		}
		patterns = append(patterns, strings.TrimPrefix(p, "/"))
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"list", "-deps", "-f", `{{.Dir}}{{range .GoFiles}}|{{.}}{{end}}{{range .EmbedFiles}}|{{.}}{{end}}`}
	for _, p := range programs {
		args = append(args, "./cmd/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for line := range strings.Lines(string(out)) {
		parts := strings.Split(strings.TrimSpace(line), "|")
		rel, err := filepath.Rel(root, parts[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // not this module's
		}
		for _, f := range parts[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	for _, f := range files {
		if p := ignoredBy(patterns, f); p != "" {
			t.Errorf(".dockerignore: %s excludes %s, which the programs are built from", p, f)
		}
	}
}

// ignoredBy returns the pattern excluding a path or one of its parents, as
// Docker reads .dockerignore (path.Match, ** for any number of elements).
func ignoredBy(patterns []string, file string) string {
	elems := strings.Split(file, "/")
	for i := 1; i <= len(elems); i++ {
		p := strings.Join(elems[:i], "/")
		for _, pat := range patterns {
			if rest, ok := strings.CutPrefix(pat, "**/"); ok {
				for j := 0; j < i; j++ {
					if m, _ := path.Match(rest, strings.Join(elems[j:i], "/")); m {
						return pat
					}
				}
			} else if m, _ := path.Match(pat, p); m {
				return pat
			}
		}
	}
	return ""
}
