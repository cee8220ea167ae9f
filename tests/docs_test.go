package tests

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"mailroom/internal/config"
)

// TestConfigurationDocs: the annotated example in docs/configuration.md
// parses, and it names every key of the configuration structs.
func TestConfigurationDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no ```toml block in docs/configuration.md")
	}
	example := string(m[1])
	if _, err := config.Parse("docs/configuration.md", []byte(example)); err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	documented := map[string]bool{}
	table := ""
	for _, line := range strings.Split(example, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			table = strings.Trim(line, "[]") + "."
		case line != "" && !strings.HasPrefix(line, "#"):
			k, _, _ := strings.Cut(line, "=")
			documented[table+strings.TrimSpace(k)] = true
		}
	}
	for _, key := range configKeys(reflect.TypeOf(config.Config{}), "") {
		parent := key[:max(strings.LastIndex(key, "."), 0)]
		if !documented[key] && !documented[parent] { // parent: an inline array of tables
			t.Errorf("docs/configuration.md does not document %q", key)
		}
	}
}

// configKeys lists the dotted TOML keys of a struct type.
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		typ := f.Type
		if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct {
			typ = typ.Elem() // an array of tables
		}
		if typ.Kind() == reflect.Struct && typ.NumField() > 0 && typ.Field(0).IsExported() {
			keys = append(keys, configKeys(typ, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}
