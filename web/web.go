// Package web holds vmre's browser dashboard: TypeScript sources in src/,
// built by esbuild (npm run build) into dist/, which is checked in and
// embedded here, so the vmre binary serves the dashboard without Node.
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Dist returns the built dashboard: index.html and its assets at the root.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only for an invalid path; "dist" is valid.
		panic(err)
	}
	return sub
}
