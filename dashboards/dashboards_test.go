package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The dashboards' JSON, decoded into the part of Grafana's dashboard model
// that the tests check: identity, layout, data sources, variables and the
// queries.

type dashboard struct {
	file          string
	ID            *int                      `json:"id"`
	UID           string                    `json:"uid"`
	Title         string                    `json:"title"`
	Description   string                    `json:"description"`
	Tags          []string                  `json:"tags"`
	SchemaVersion int                       `json:"schemaVersion"`
	Editable      bool                      `json:"editable"`
	Time          struct{ From, To string } `json:"time"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Links  []json.RawMessage `json:"links"`
	Panels []panel           `json:"panels"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *dsRef          `json:"datasource"`
	Definition string          `json:"definition"`
	Query      json.RawMessage `json:"query"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

type gridPos struct{ H, W, X, Y int }

type panel struct {
	ID          int      `json:"id"`
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	GridPos     gridPos  `json:"gridPos"`
	Datasource  *dsRef   `json:"datasource"`
	Targets     []target `json:"targets"`
	Panels      []panel  `json:"panels"` // a collapsed row's
	Collapsed   bool     `json:"collapsed"`
}

type target struct {
	RefID        string `json:"refId"`
	Datasource   *dsRef `json:"datasource"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	// grafana-clickhouse-datasource
	EditorType string `json:"editorType"`
	RawSQL     string `json:"rawSql"`
	Format     *int   `json:"format"`
	QueryType  string `json:"queryType"`
}

// ClickHouse plugin query formats (sqlds): the backend shapes a result
// by format, not by queryType.
const (
	formatTimeSeries = 0
	formatTable      = 1
)

const (
	typePrometheus = "prometheus"
	typeClickHouse = "grafana-clickhouse-datasource"
)

// query is one panel query with where it is.
type query struct {
	dash   *dashboard
	panel  *panel
	target *target
	ds     dsRef // resolved: the provisioned data source's type and uid
}

func (q query) String() string {
	return fmt.Sprintf("%s: panel %q, query %s", q.dash.file, q.panel.Title, q.target.RefID)
}

func loadDashboards(t *testing.T) []*dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	var out []*dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := &dashboard{file: f}
		if err := json.Unmarshal(b, d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, d)
	}
	return out
}

// allPanels walks the panels, rows' panels included.
func (d *dashboard) allPanels() []*panel {
	var out []*panel
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for i := range ps {
			out = append(out, &ps[i])
			walk(ps[i].Panels)
		}
	}
	walk(d.Panels)
	return out
}

var varRef = regexp.MustCompile(`^\$\{?(\w+)\}?$`)

// resolve resolves a panel or target data source, which names a
// data-source variable of the dashboard, to the provisioned data source
// the variable selects by default.
func (d *dashboard) resolve(ref *dsRef) (dsRef, error) {
	if ref == nil {
		return dsRef{}, fmt.Errorf("no data source")
	}
	m := varRef.FindStringSubmatch(ref.UID)
	if m == nil {
		return dsRef{}, fmt.Errorf("data source uid %q: name a data-source variable (${name}) so that the dashboard works with another data source too", ref.UID)
	}
	for _, v := range d.Templating.List {
		if v.Name != m[1] {
			continue
		}
		var plugin string
		if v.Type != "datasource" || json.Unmarshal(v.Query, &plugin) != nil {
			return dsRef{}, fmt.Errorf("variable %s is not a data-source variable", v.Name)
		}
		if plugin != ref.Type {
			return dsRef{}, fmt.Errorf("data source type %q, but variable %s selects %q", ref.Type, v.Name, plugin)
		}
		uid, _ := v.Current.Value.(string)
		return dsRef{Type: plugin, UID: uid}, nil
	}
	return dsRef{}, fmt.Errorf("no variable %s", m[1])
}

// queries are every query of the dashboards, data sources resolved.
func queries(t *testing.T, ds []*dashboard) []query {
	t.Helper()
	var out []query
	for _, d := range ds {
		for _, p := range d.allPanels() {
			if p.Type == "row" {
				continue
			}
			for i := range p.Targets {
				tg := &p.Targets[i]
				ref := tg.Datasource
				if ref == nil {
					ref = p.Datasource
				}
				q := query{dash: d, panel: p, target: tg}
				r, err := d.resolve(ref)
				if err != nil {
					t.Errorf("%s: %v", q, err)
					continue
				}
				q.ds = r
				out = append(out, q)
			}
		}
	}
	return out
}

// provisioning is what the provisioning files say.
type provisioning struct {
	datasources []provisionedDS
	providers   []provider
}

type provisionedDS struct {
	Name           string         `yaml:"name"`
	UID            string         `yaml:"uid"`
	Type           string         `yaml:"type"`
	Access         string         `yaml:"access"`
	URL            string         `yaml:"url"`
	IsDefault      bool           `yaml:"isDefault"`
	Editable       bool           `yaml:"editable"`
	JSONData       map[string]any `yaml:"jsonData"`
	SecureJSONData map[string]any `yaml:"secureJsonData"`
}

type provider struct {
	Name                  string `yaml:"name"`
	OrgID                 int    `yaml:"orgId"`
	Type                  string `yaml:"type"`
	Folder                string `yaml:"folder"`
	FolderUID             string `yaml:"folderUid"`
	DisableDeletion       bool   `yaml:"disableDeletion"`
	AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
	UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
	Options               struct {
		Path                      string `yaml:"path"`
		FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
	} `yaml:"options"`
}

// decodeStrict decodes YAML, refusing unknown fields.
func decodeStrict(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func loadProvisioning(t *testing.T) provisioning {
	t.Helper()
	var p provisioning
	var ds struct {
		APIVersion  int             `yaml:"apiVersion"`
		Datasources []provisionedDS `yaml:"datasources"`
	}
	if err := decodeStrict("provisioning/datasources/sessionmon.yaml", &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 {
		t.Errorf("datasources: apiVersion %d, want 1", ds.APIVersion)
	}
	p.datasources = ds.Datasources
	var pr struct {
		APIVersion int        `yaml:"apiVersion"`
		Providers  []provider `yaml:"providers"`
	}
	if err := decodeStrict("provisioning/dashboards/sessionmon.yaml", &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != 1 {
		t.Errorf("dashboard providers: apiVersion %d, want 1", pr.APIVersion)
	}
	p.providers = pr.Providers
	return p
}

func TestProvisioning(t *testing.T) {
	p := loadProvisioning(t)
	uids := map[string]provisionedDS{}
	for _, d := range p.datasources {
		if d.Name == "" || d.UID == "" || d.Type == "" {
			t.Errorf("data source %+v: name, uid and type are required", d)
		}
		if _, dup := uids[d.UID]; dup {
			t.Errorf("data source uid %s twice", d.UID)
		}
		uids[d.UID] = d
		switch d.Type {
		case typePrometheus:
			if d.Access != "proxy" || d.URL == "" {
				t.Errorf("%s: access %q url %q, want proxy and a URL", d.Name, d.Access, d.URL)
			}
		case typeClickHouse:
			// The plugin's v4 settings (its src/types/config.ts).
			for _, k := range []string{"host", "port", "protocol", "username", "defaultDatabase"} {
				if _, ok := d.JSONData[k]; !ok {
					t.Errorf("%s: jsonData.%s is missing", d.Name, k)
				}
			}
			if _, ok := d.JSONData["port"].(int); !ok {
				t.Errorf("%s: jsonData.port must be a number, got %#v", d.Name, d.JSONData["port"])
			}
			if pr := d.JSONData["protocol"]; pr != "native" && pr != "http" {
				t.Errorf("%s: jsonData.protocol %v", d.Name, pr)
			}
			// The database the audit writer uses by default.
			if db := d.JSONData["defaultDatabase"]; db != "sessionmon" {
				t.Errorf("%s: defaultDatabase %v, want sessionmon", d.Name, db)
			}
			if pw, _ := d.SecureJSONData["password"].(string); !strings.HasPrefix(pw, "$") {
				t.Errorf("%s: the password must come from the environment ($VAR), never the file", d.Name)
			}
		default:
			t.Errorf("%s: unexpected type %s", d.Name, d.Type)
		}
	}
	// Every data source a dashboard selects by default is provisioned,
	// with the type the dashboard expects.
	for _, q := range queries(t, loadDashboards(t)) {
		d, ok := uids[q.ds.UID]
		if !ok {
			t.Errorf("%s: data source %s is not provisioned", q, q.ds.UID)
		} else if d.Type != q.ds.Type {
			t.Errorf("%s: data source %s is a %s, the query is for %s", q, q.ds.UID, d.Type, q.ds.Type)
		}
	}
	if len(p.providers) != 1 {
		t.Fatalf("%d dashboard providers, want 1", len(p.providers))
	}
	pr := p.providers[0]
	if pr.Type != "file" || pr.Options.Path == "" || pr.Folder == "" || pr.OrgID != 1 {
		t.Errorf("provider %+v: want type file, a path, a folder, org 1", pr)
	}
}

func TestDashboards(t *testing.T) {
	ds := loadDashboards(t)
	uids := map[string]string{}
	for _, d := range ds {
		t.Run(d.file, func(t *testing.T) {
			if d.ID != nil {
				t.Errorf("id %d: a provisioned dashboard has id null (Grafana assigns it)", *d.ID)
			}
			if d.UID == "" || len(d.UID) > 40 || d.Title == "" || d.Description == "" {
				t.Errorf("uid %q (1 to 40 characters), title %q and description are required", d.UID, d.Title)
			}
			if prev, dup := uids[d.UID]; dup {
				t.Errorf("uid %s is %s's too", d.UID, prev)
			}
			uids[d.UID] = d.file
			if d.SchemaVersion < 39 {
				t.Errorf("schemaVersion %d: export from Grafana 11 or later", d.SchemaVersion)
			}
			if d.Editable {
				t.Error("editable: the provisioned files are the source of truth")
			}
			if !slices.Contains(d.Tags, "sessionmon") {
				t.Errorf("tags %v: want sessionmon", d.Tags)
			}
			checkLayout(t, d)
			for _, q := range queries(t, []*dashboard{d}) {
				switch q.ds.Type {
				case typePrometheus:
					if q.target.Expr == "" || q.target.RawSQL != "" {
						t.Errorf("%s: a Prometheus query has an expr and no rawSql", q)
					}
				case typeClickHouse:
					if q.target.RawSQL == "" || q.target.Expr != "" || q.target.EditorType != "sql" || q.target.Format == nil {
						t.Errorf("%s: a ClickHouse query has editorType sql, a rawSql, a format and no expr", q)
						continue
					}
					want := map[int]string{formatTimeSeries: "timeseries", formatTable: "table"}[*q.target.Format]
					if want == "" || q.target.QueryType != want {
						t.Errorf("%s: format %d and queryType %q disagree", q, *q.target.Format, q.target.QueryType)
					}
					if q.panel.Type == "timeseries" && *q.target.Format != formatTimeSeries {
						t.Errorf("%s: a time series panel needs format %d (time series)", q, formatTimeSeries)
					}
				}
			}
		})
	}
}

// checkLayout checks panel IDs, titles, targets and that panels neither
// overlap nor leave the 24-column grid.
func checkLayout(t *testing.T, d *dashboard) {
	t.Helper()
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.allPanels() {
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d is not unique and positive", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d, %d)", p.Title, other, x, y)
					return
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description (what it shows, for the operator reading it)", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q is not unique", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
}
