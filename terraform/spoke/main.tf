# Root configuration of one spoke account: `cd terraform/spoke && terraform init && terraform
# apply -var='region=...' -var='orchestrator_account_id=...'` with credentials of that account.

module "spoke" {
  source = "../modules/spoke"

  orchestrator_account_id  = var.orchestrator_account_id
  role_name                = var.role_name
  external_id              = var.external_id
  hub_name_prefix          = var.hub_name_prefix
  hub_role_names           = var.hub_role_names
  patch_tag_key            = var.patch_tag_key
  patch_tag_values         = var.patch_tag_values
  allow_snapshots          = var.allow_snapshots
  permissions_boundary_arn = var.permissions_boundary_arn
  tags                     = var.tags
}
