// Package openapi embeds the generated OpenAPI v2 document so servers can
// serve it. This file is the only hand-written one under gen/.
package openapi

import _ "embed"

// Spec is the OpenAPI v2 (Swagger) JSON document of the REST API.
//
//go:embed orderly.swagger.json
var Spec []byte
