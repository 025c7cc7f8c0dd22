
require go.yaml.in/yaml/v3 v3.0.5
