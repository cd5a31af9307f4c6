# Providers for the local AWS stack (moto behind the ec2patch router): every endpoint points at
# it, nothing asks a real AWS. max_retries = 1 because with the default an unsupported call
# makes apply hang for minutes.

provider "aws" {
  region                      = "us-east-1"
  access_key                  = var.access_key
  secret_key                  = var.secret_key
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  max_retries                 = 1

  endpoints {
    apigatewayv2 = var.endpoint
    cloudwatch   = var.endpoint
    dynamodb     = var.endpoint
    events       = var.endpoint
    iam          = var.endpoint
    kms          = var.endpoint
    lambda       = var.endpoint
    logs         = var.endpoint
    s3           = var.endpoint
    sfn          = var.endpoint
    sns          = var.endpoint
    sqs          = var.endpoint
    ssm          = var.endpoint
    sts          = var.endpoint
  }
}

# Spokes: the hub identity assumes a deployment role in each spoke account, as a pipeline would
# (moto does not check the role's trust, and credentials from AssumeRole act in that account).
provider "aws" {
  alias                       = "spoke_a"
  region                      = "us-east-1"
  access_key                  = var.access_key
  secret_key                  = var.secret_key
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  max_retries                 = 1

  assume_role {
    role_arn     = "arn:aws:iam::${var.spoke_accounts[0]}:role/OrganizationAccountAccessRole"
    session_name = "ec2patch-spoke-deploy"
  }

  endpoints {
    iam = var.endpoint
    sts = var.endpoint
  }
}

provider "aws" {
  alias                       = "spoke_b"
  region                      = "us-east-1"
  access_key                  = var.access_key
  secret_key                  = var.secret_key
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  max_retries                 = 1

  assume_role {
    role_arn     = "arn:aws:iam::${var.spoke_accounts[1]}:role/OrganizationAccountAccessRole"
    session_name = "ec2patch-spoke-deploy"
  }

  endpoints {
    iam = var.endpoint
    sts = var.endpoint
  }
}
